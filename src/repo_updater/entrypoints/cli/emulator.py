"""``repo-updater emulator ...``: run the code-host emulator, and change its state from a shell
so that a person can archive a repo and watch the service react.

  repo-updater emulator serve [--port 7700] [--seed-github 3x100] [--pulls 2]
  repo-updater emulator archive acme/repo-3 [--kind github] [--url http://127.0.0.1:7700]
  repo-updater emulator unarchive | delete REPO
  repo-updater emulator rename REPO NEW_NAME
  repo-updater emulator repos [--owner acme]
  repo-updater emulator pull REPO NUMBER --state MERGED|CLOSED|OPEN|DRAFT [--check PASSED]
  repo-updater emulator fault --errors 3 | --timeouts 1 | --truncate 1 | --rate-limited 2 | --clear
  repo-updater emulator collaborator add|remove REPO LOGIN | collaborators REPO
  repo-updater emulator visibility REPO private|public
  repo-updater emulator webhook add URL --secret-env VAR | list | clear | deliveries | faults
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from typing import Any

from repo_updater.core.domain import HostKind

DEFAULT_URL = "http://127.0.0.1:7700"
_SEED_RE = re.compile(r"^(\d+)x(\d+)$")


def _seed_spec(value: str) -> tuple[int, int]:
    match = _SEED_RE.match(value)
    if not match:
        raise argparse.ArgumentTypeError("must look like ORGSxREPOS, e.g. 3x100")
    return int(match.group(1)), int(match.group(2))


async def cmd_serve(args: argparse.Namespace) -> int:
    from repo_updater.emulator.server import serve_forever
    from repo_updater.emulator.state import EmulatorState

    state = EmulatorState()
    for kind, spec in (
        (HostKind.GITHUB, args.seed_github),
        (HostKind.GITLAB, args.seed_gitlab),
        (HostKind.GITEA, args.seed_gitea),
    ):
        if not spec:
            continue
        orgs, per_org = spec
        if kind is HostKind.GITHUB and orgs == 1:
            # One GitHub org is 'acme' itself (as --help and the README promise), not the
            # 'acme0' that ``seed`` would name it.
            host = state.host(kind)
            for j in range(per_org):
                repo = host.add_repo("acme", f"repo-{j}")
                for k in range(args.pulls):
                    host.add_pull(repo.full_name, title=f"Batch change {k} on {repo.name}")
            continue
        state.seed(
            kind, orgs=orgs, repos_per_org=per_org, pulls_per_repo=args.pulls, org_prefix="org"
        )
    print(
        f"code-host emulator on http://{args.host}:{args.port} "
        f"(github at /github, gitlab at /gitlab, gitea at /gitea, bitbucket at /bitbucket)",
        flush=True,
    )
    try:
        await serve_forever(state, host=args.host, port=args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


async def cmd_admin(args: argparse.Namespace) -> int:
    from repo_updater.emulator.admin_client import EmulatorAdmin, EmulatorAdminError

    kind: str = args.kind
    async with EmulatorAdmin(args.url) as admin:
        try:
            result: Any
            if args.emulator_command in ("archive", "unarchive", "delete"):
                result = await getattr(admin, args.emulator_command)(kind, args.repo)
                done = {"archive": "archived", "unarchive": "unarchived", "delete": "deleted"}
                print(f"{done[args.emulator_command]} {args.repo} on the emulated {kind}")
            elif args.emulator_command == "rename":
                result = await admin.rename(kind, args.repo, args.new_name)
                print(f"renamed {args.repo} to {args.new_name} on the emulated {kind}")
            elif args.emulator_command == "repos":
                result = await admin.repos(kind, owner=args.owner)
                for repo in result:
                    flag = " (archived)" if repo.get("archived") else ""
                    print(f"{repo.get('full_name')}{flag}")
            elif args.emulator_command == "pull":
                result = await admin.set_pull(
                    kind, args.repo, args.number, state=args.state, check_state=args.check
                )
                print(json.dumps(result))
            else:
                if args.clear:
                    result = await admin.clear_faults(kind)
                else:
                    fields = {
                        k: v
                        for k, v in (
                            ("errors_next", args.errors),
                            ("timeouts_next", args.timeouts),
                            ("truncate_next", args.truncate),
                            ("rate_limited_next", args.rate_limited),
                            ("latency_ms", args.latency_ms),
                        )
                        if v is not None
                    }
                    result = await admin.set_faults(kind, **fields)
                print(json.dumps(result))
        except EmulatorAdminError as exc:
            print(f"error: emulator: {exc}", file=sys.stderr)
            return 2
    return 0


def add_parser(sub: Any) -> None:
    emu = sub.add_parser(
        "emulator",
        help="run or control the built-in code-host emulator",
        description="A code-host emulator (GitHub, GitLab, Gitea, Bitbucket Server APIs) for "
        "trying things out: run it, then archive, rename or delete its repos and watch.",
    )
    cmds = emu.add_subparsers(dest="emulator_command", required=True, metavar="ACTION")
    serve = cmds.add_parser("serve", help="run the emulator until Ctrl-C")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--port", type=int, default=7700, help="port (default 7700; 0: any free)")
    serve.add_argument("--seed-github", type=_seed_spec, help="ORGSxREPOS, e.g. 1x50 (org 'acme')")
    serve.add_argument("--seed-gitlab", type=_seed_spec, help="GROUPSxREPOS, e.g. 2x10")
    serve.add_argument("--seed-gitea", type=_seed_spec, help="ORGSxREPOS, e.g. 2x10")
    serve.add_argument("--pulls", type=int, default=0, help="open pull requests per seeded repo")
    serve.set_defaults(func=f"{__name__}:cmd_serve")

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=DEFAULT_URL, help=f"emulator URL (default {DEFAULT_URL})")
        p.add_argument(
            "--kind", default="github", choices=[k.value for k in HostKind],
            help="which emulated host (default github)",
        )  # fmt: skip
        p.set_defaults(func=f"{__name__}:cmd_admin")

    for name in ("archive", "unarchive", "delete"):
        p = cmds.add_parser(name, help=f"{name} a repository")
        p.add_argument("repo", help="owner/name")
        target(p)
    p = cmds.add_parser("rename", help="rename a repository")
    p.add_argument("repo", help="owner/name")
    p.add_argument("new_name", help="the new name (name, or owner/name to transfer it)")
    target(p)
    p = cmds.add_parser("repos", help="list the emulated repositories")
    p.add_argument("--owner", help="only this owner's repositories")
    target(p)
    p = cmds.add_parser("pull", help="change a pull request")
    p.add_argument("repo", help="owner/name")
    p.add_argument("number", type=int, help="the pull request's number")
    p.add_argument("--state", choices=["OPEN", "DRAFT", "CLOSED", "MERGED", "DELETED"],
                   help="its new state")  # fmt: skip
    p.add_argument("--check", choices=["PENDING", "PASSED", "FAILED"],
                   help="its new check state")  # fmt: skip
    target(p)
    p = cmds.add_parser("fault", help="make the next requests fail")
    p.add_argument("--errors", type=int, help="answer the next N requests with 502")
    p.add_argument("--timeouts", type=int, help="stall the next N requests")
    p.add_argument("--truncate", type=int, help="cut the next N response bodies short")
    p.add_argument("--rate-limited", type=int, help="rate-limit the next N requests")
    p.add_argument("--latency-ms", type=int, help="add latency to every request")
    p.add_argument("--clear", action="store_true", help="clear every fault")
    target(p)
    importlib.import_module(f"{__package__}.emulator_permissions").add_commands(cmds, DEFAULT_URL)
    importlib.import_module(f"{__package__}.emulator_webhooks").add_commands(cmds, DEFAULT_URL)
