"""Batch specs as the CLI and the API use them: ``preview`` (read the files from the hosts,
show per repository the diff or why it is skipped; nothing is written) and ``enqueue`` (store
the spec and an ``apply_spec`` operation for the operation workers, see
``service_layer.spec_worker``).

Repositories are matched against the store (``on.repos`` / ``on.exclude`` globs on the store's
repo names, its archived and fork flags); a repository a previous apply opened a changeset on
and that the spec no longer matches gets a result too (its changeset is closed), or is
detached at once (``changeset.on_removed: detach``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.batch_spec import spec_to_json
from repo_updater.core.domain import ExternalState, HostKind
from repo_updater.core.errors import SourceError, describe
from repo_updater.core.ports import FileWriter
from repo_updater.core.specs import (
    OnRemoved,
    Spec,
    decide,
    matches,
    skip_by_flags,
    unified_diff,
)
from repo_updater.store import changesets as cs_store
from repo_updater.store import spec_targets as store
from repo_updater.store.changesets import BatchChangeClosed
from repo_updater.store.spec_targets import SpecRepo, Target

HostKey = tuple[HostKind, str]
FileWriters = Mapping[HostKey, FileWriter]
PREVIEW_CONCURRENCY = 8
_OPEN = (ExternalState.OPEN, ExternalState.DRAFT)


@dataclass(frozen=True, slots=True)
class RepoPreview:
    repo_name: str
    action: str  # "change", "skip", "close", "detach"
    reason: str = ""  # why skipped
    diff: str = ""


@dataclass(frozen=True, slots=True)
class Enqueued:
    batch_change_id: int
    operation_id: int
    spec_id: int
    skipped: dict[str, str]  # repo name -> reason (archived, fork: not read)
    detached: int
    removed: int  # results that will close a changeset no longer matched


def file_writers(sources: Iterable[object]) -> dict[HostKey, FileWriter]:
    """The sources that can read files and commit, by host."""
    out: dict[HostKey, FileWriter] = {}
    for source in sources:
        if hasattr(source, "commit_files"):
            kind, url = getattr(source, "kind"), getattr(source, "host_url")  # noqa: B009
            out[(HostKind(kind), str(url))] = cast(FileWriter, source)
    return out


def _host(repo: SpecRepo) -> HostKey:
    return (HostKind(repo.host_kind), repo.host_url)


def still_open(target: Target) -> bool:
    return target.changeset_id is not None and target.external_state in (*_OPEN, None)


async def preview(
    conn: AsyncConnection, spec: Spec, writers: FileWriters, *, now: datetime
) -> list[RepoPreview]:
    """What applying ``spec`` would do to each repository, from the files on the hosts."""
    repos = [r for r in await store.live_repos(conn) if matches(spec, r.name)]
    found = await store.find_batch_change(conn, spec.name)
    tracked = [] if found is None else await store.targets(conn, found[0])
    matched = {r.id for r in repos}
    gate = asyncio.Semaphore(PREVIEW_CONCURRENCY)

    async def one(repo: SpecRepo) -> RepoPreview:
        skip = skip_by_flags(spec, archived=repo.archived, fork=repo.fork)
        if skip is not None:
            return RepoPreview(repo.name, "skip", skip)
        writer = writers.get(_host(repo))
        if writer is None:
            return RepoPreview(repo.name, "skip", "no configured connection can write to it")
        async with gate:
            try:
                branch = await writer.default_branch(repo.external_name)
                current = await writer.read_files(repo.external_name, branch, spec.paths)
            except SourceError as exc:
                return RepoPreview(repo.name, "skip", f"could not read files: {describe(exc)}")
        outcome = decide(spec, current)
        if outcome.skip is not None:
            return RepoPreview(repo.name, "skip", outcome.skip)
        return RepoPreview(repo.name, "change", diff=unified_diff(current, outcome.files))

    out = list(await asyncio.gather(*(one(r) for r in repos)))
    for target in tracked:
        if target.repo_id not in matched and target.state == store.ACTIVE and still_open(target):
            action = "detach" if spec.on_removed is OnRemoved.DETACH else "close"
            out.append(RepoPreview(target.repo_name, action, "no longer matched by the spec"))
    return out


async def enqueue(
    conn: AsyncConnection,
    spec: Spec,
    *,
    requested_by: str,
    now: datetime,
    hosts: Callable[[HostKey], bool] = lambda _h: True,
) -> Enqueued:
    """Store the spec (creating its batch change, named by ``spec.name``, if there is none)
    and an apply_spec operation: a result for each matched repository not skipped by its
    flags, and one for each repository whose changeset the spec no longer wants."""
    found = await store.find_batch_change(conn, spec.name)
    if found is None:
        bc = await cs_store.create_batch_change(conn, spec.name, spec.description, now)
    elif not found[1]:
        raise BatchChangeClosed(f"batch change {spec.name!r} is closed")
    else:
        bc = found[0]
    spec_id = await store.save_spec(conn, bc, spec_to_json(spec), now)
    skipped: dict[str, str] = {}
    wanted: list[int] = []
    matched: set[int] = set()
    for repo in await store.live_repos(conn):
        if not matches(spec, repo.name):
            continue
        matched.add(repo.id)
        reason = skip_by_flags(spec, archived=repo.archived, fork=repo.fork)
        if reason is None and not hosts(_host(repo)):
            reason = "no configured connection can write to it"
        if reason is not None:
            skipped[repo.name] = reason
        else:
            wanted.append(repo.id)
    work = await store.ensure_targets(conn, bc, wanted, spec.changeset.branch, now)
    detached = removed = 0
    for target in await store.targets(conn, bc):
        if target.repo_id in matched or target.state != store.ACTIVE:
            continue
        if spec.on_removed is OnRemoved.DETACH:
            await store.detach(conn, bc, target, now)
            detached += 1
        elif still_open(target):
            work[target.repo_id] = target.id
            removed += 1
        else:
            await store.set_state(conn, target.id, store.CLOSED, now)
    op_id = await store.create_operation(
        conn, bc, spec_id, work, requested_by=requested_by, now=now
    )
    return Enqueued(bc, op_id, spec_id, skipped, detached, removed)
