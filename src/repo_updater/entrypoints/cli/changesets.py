"""``repo-updater changesets ...``: track pull requests (checked with their code host), list
changesets, and sync them now (or queue a sync); the bulk actions (close, merge, ...) are in
``cli.operations``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from repo_updater.entrypoints.cli.common import (
    CLIError,
    batch_change_ref,
    find_batch_change,
    load,
    pr_number,
    print_rows,
    store_options,
    store_transaction,
)
from repo_updater.entrypoints.cli.operations import add_changeset_actions
from repo_updater.entrypoints.cli.output import output_option

if TYPE_CHECKING:
    from repo_updater.store.changeset_queries import ChangesetView

COLUMNS = [
    "id",
    "repo_name",
    "number",
    "external_state",
    "review_state",
    "check_state",
    "title",
    "last_synced_at",
    "synced_by",
    "sync_error",
]
STATES = ["DRAFT", "OPEN", "CLOSED", "MERGED", "DELETED", "READONLY", "UNSYNCED"]
BC_HELP = "the batch change's name (or id)"


def _state(value: str) -> str:
    state = value.upper()
    if state not in STATES:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(STATES)} (any case)")
    return state


def add_parser(sub: Any) -> None:
    group = sub.add_parser(
        "changesets",
        help="changesets (tracked pull requests): list, track, sync; close, merge, ... in bulk",
        description="Changesets are the pull/merge requests batch changes track. close, "
        "reopen, merge, comment, ready, draft and update act on many at once (bulk "
        "operations, paced within each host's write limits; see `operations`).",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser(
        "list",
        help="list changesets (sync errors first, then READONLY, then the rest)",
        description="List changesets: those whose last sync failed first, then READONLY ones "
        "(archived repositories), then the rest, by id.",
    )
    store_options(p)
    output_option(p)
    p.add_argument("--batch-change", type=batch_change_ref, metavar="NAME", help=BC_HELP)
    p.add_argument("--state", type=_state, help="only this state: " + ", ".join(STATES))
    p.add_argument("--errored", action="store_true", help="only those whose last sync failed")
    p.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    p.set_defaults(func=f"{__name__}:cmd_list")
    t = actions.add_parser(
        "track",
        help="track existing pull requests in a batch change (checked with the host first)",
        description="Track pull requests in a batch change. Each number is checked with the "
        "code host first (so --config must configure a service for that host): one that "
        "does not exist is an error and nothing is tracked. A sync is requested for each.",
    )
    t.add_argument("--batch-change", type=batch_change_ref, metavar="NAME", required=True,
                   help=BC_HELP)  # fmt: skip
    t.add_argument("--repo", required=True, help="repository name as `repos list` shows it")
    t.add_argument(
        "--number", type=pr_number, nargs="+", required=True,
        help="pull request number(s) on that repository",
    )  # fmt: skip
    store_options(t)
    t.set_defaults(func=f"{__name__}:cmd_track")
    s = actions.add_parser(
        "sync",
        help="sync changesets now and print the result (--queue: only request it)",
        description="Sync the given changesets (or all of a batch change's) from their code "
        "hosts now, and print what they are. Needs --config (the hosts' tokens). With "
        "--queue, only request a sync: a running `serve` does it within seconds.",
    )
    s.add_argument("id", type=int, nargs="*", help="changeset id(s), as `changesets list` shows")
    s.add_argument("--batch-change", type=batch_change_ref, metavar="NAME",
                   help="every changeset of this batch change (name or id)")  # fmt: skip
    s.add_argument("--queue", action="store_true", help="only request the sync; do not wait")
    s.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the syncs (default 120)")  # fmt: skip
    store_options(s)
    output_option(s)
    s.set_defaults(func=f"{__name__}:cmd_sync")
    add_changeset_actions(actions)  # close, reopen, merge, comment, ready, draft, update


async def cmd_list(args: argparse.Namespace) -> int:
    from repo_updater.store import changeset_queries as queries

    if not 1 <= args.limit <= 1_000_000:
        raise CLIError("--limit must be between 1 and 1000000")
    async with store_transaction(args, read=True) as conn:
        bc_id = None
        if args.batch_change is not None:
            bc_id = (await find_batch_change(conn, args.batch_change)).id
        where = queries.ChangesetFilter(
            batch_change_id=bc_id, state=args.state, errored=True if args.errored else None
        )
        rows = await queries.page_changesets(
            conn, where, order=queries.ChangesetOrder.ATTENTION, limit=args.limit
        )
    print_rows([view for view, _ in rows], args.output, COLUMNS)
    return 0


async def cmd_track(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import open_app
    from repo_updater.core.errors import SourceError
    from repo_updater.service_layer.sync_now import missing_pulls, source_for
    from repo_updater.store import changesets as cs_store
    from repo_updater.store import repos as repo_store

    config = load(args, required=True)
    async with open_app(config) as app:
        async with app.engine.connect() as conn:
            bc = await find_batch_change(conn, args.batch_change)
            repo = await repo_store.get_repo_by_name(conn, args.repo)
        if repo is None:
            raise CLIError(f"no repository named {args.repo!r}; see `repo-updater repos list`")
        source = source_for(list(app.sources.values()), repo)
        if source is None:
            raise CLIError(
                f"{args.repo} is on {repo.host_url}, which no service in the config connects "
                "to: its pull requests cannot be checked"
            )
        try:
            missing = await missing_pulls(source, repo, args.number)
        except SourceError as exc:
            print(f"error: cannot check the pull requests with {repo.host_url}: {exc}")
            return 1
        if missing:
            numbers = ", ".join(f"#{n}" for n in missing)
            raise CLIError(f"{args.repo} has no pull request {numbers} on its code host; "
                           "nothing was tracked")  # fmt: skip
        async with app.engine.begin() as conn:
            pairs = [(repo.id, n) for n in args.number]
            ids = await cs_store.track_changesets(conn, bc.id, pairs, app.clock())
    for number, cs_id in zip(args.number, ids, strict=True):
        print(f"tracking {args.repo}#{number} as changeset {cs_id} in {bc.name!r}; "
              "sync requested")  # fmt: skip
    return 0


async def _chosen_ids(args: argparse.Namespace, conn: Any) -> list[int]:
    from repo_updater.store import changeset_queries as queries

    ids = list(dict.fromkeys(args.id))
    if args.batch_change is not None:
        bc = await find_batch_change(conn, args.batch_change)
        ids += [v.id for v in await queries.list_changesets(conn, batch_change_id=bc.id)]
    if not ids:
        raise CLIError("give changeset ids, or --batch-change NAME")
    return list(dict.fromkeys(ids))


async def cmd_sync(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import utcnow

    if args.queue:
        from repo_updater.store import changesets as cs_store

        async with store_transaction(args) as conn:
            ids = await _chosen_ids(args, conn)
            chosen = set(await cs_store.requestable(conn, ids))
            await cs_store.request_sync(conn, chosen, "cli", utcnow())
            refused = await _why_not(conn, [i for i in ids if i not in chosen])
        if not chosen:
            raise CLIError("; ".join(refused))
        for line in refused:
            print(line)
        print(f"sync requested for {len(chosen)} changeset(s); `serve` syncs them within seconds")
        return 0
    return await _sync_now(args)


async def _why_not(conn: Any, ids: list[int]) -> list[str]:
    """Why each of these changesets cannot be synced (no such changeset, not published yet,
    its repository removed, or no open batch change tracks it)."""
    from repo_updater.bootstrap import utcnow
    from repo_updater.store import changesets as cs_store

    out = []
    for i in ids:
        status = await cs_store.sync_status(conn, i, utcnow())
        if status is None:
            out.append(f"no published changeset with id {i}")
        else:
            out.append(f"changeset {i} is not synced: {status.not_synced or 'not syncable'}")
    return out


async def _sync_now(args: argparse.Namespace) -> int:
    from repo_updater.bootstrap import open_app
    from repo_updater.service_layer.sync_now import sync_now
    from repo_updater.store import changeset_queries as queries

    config = load(args, required=True)
    async with open_app(config) as app:
        async with app.engine.connect() as conn:
            ids = await _chosen_ids(args, conn)
        done = await sync_now(app.engine, app.changeset_syncer, ids, app.clock, wait=args.timeout)
        async with app.engine.connect() as conn:
            views = [v for i in done.synced if (v := await queries.get_changeset(conn, i))]
            refused = await _why_not(conn, done.unknown)
    if not views and not done.waiting and refused:
        raise CLIError("; ".join(refused))  # nothing could be synced: a usage error, as --queue
    _report(views, args.output)
    for line in refused:
        print(line)
    if done.waiting:
        waiting = ", ".join(str(i) for i in done.waiting)
        print(f"not synced within {args.timeout:g}s (rate limit?): {waiting}; their sync "
              "stays requested")  # fmt: skip
    failed = any(v.sync_error for v in views)
    return 1 if failed or done.waiting or done.unknown else 0


def _report(views: list[ChangesetView], fmt: str) -> None:
    print_rows(views, fmt, COLUMNS)
