"""``repo-updater emulator ...`` commands for who can read what (added to the ``emulator`` group):

repo-updater emulator collaborator add acme/secret alice [--permission write] [--kind github]
repo-updater emulator collaborator remove acme/secret alice
repo-updater emulator collaborators acme/secret
repo-updater emulator visibility acme/secret private|public
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from repo_updater.core.domain import HostKind

LEVELS = ("guest", "read", "triage", "write", "maintain", "admin")


def add_commands(cmds: Any, default_url: str) -> None:
    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", default=default_url, help=f"emulator URL (default {default_url})")
        p.add_argument(
            "--kind",
            default="github",
            choices=[k.value for k in HostKind],
            help="which emulated host (default github)",
        )
        p.set_defaults(func=f"{__name__}:cmd_access")

    p = cmds.add_parser("collaborator", help="add or remove a collaborator of a repository")
    p.add_argument("action", choices=["add", "remove"], help="add (or change) or remove")
    p.add_argument("repo", help="owner/name")
    p.add_argument("login", help="the account to add or remove")
    p.add_argument(
        "--permission",
        choices=LEVELS,
        default="read",
        help="level for add, named as each host names it in its API (default read)",
    )
    target(p)
    p = cmds.add_parser("collaborators", help="who has access to a repository")
    p.add_argument("repo", help="owner/name")
    target(p)
    p = cmds.add_parser("visibility", help="make a repository private or public")
    p.add_argument("repo", help="owner/name")
    p.add_argument("visibility", choices=["private", "public"], help="the new visibility")
    target(p)


async def cmd_access(args: argparse.Namespace) -> int:
    from repo_updater.emulator.admin_client import EmulatorAdmin, EmulatorAdminError

    kind: str = args.kind
    async with EmulatorAdmin(args.url) as admin:
        try:
            if args.emulator_command == "collaborator":
                level = args.permission if args.action == "add" else None
                await admin.set_collaborator(kind, args.repo, args.login, level)
                done = f"added {args.login} ({level}) to" if level else f"removed {args.login} from"
                print(f"{done} {args.repo} on the emulated {kind}")
            elif args.emulator_command == "visibility":
                await admin.set_visibility(kind, args.repo, args.visibility == "private")
                print(f"{args.repo} is now {args.visibility} on the emulated {kind}")
            else:
                info = await admin.collaborators(kind, args.repo)
                state = "private" if info["private"] else "public"
                print(f"{info['repo']} ({state}):")
                for login, level in info["effective"].items():
                    print(f"  {login:<24} {level}")
        except EmulatorAdminError as exc:
            print(f"error: emulator: {exc}", file=sys.stderr)
            return 2
    return 0
