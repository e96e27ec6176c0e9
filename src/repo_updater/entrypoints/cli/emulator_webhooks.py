"""``repo-updater emulator webhook ...``: the emulator's webhooks (added to the ``emulator``
group).

repo-updater emulator webhook add URL --secret-env VAR [--kind github]
repo-updater emulator webhook list | clear | deliveries
repo-updater emulator webhook faults [--drop-rate 0.1] [--drop-next N] [--duplicate-next N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from repo_updater.core.domain import HostKind


def add_commands(cmds: Any, default_url: str) -> None:
    p = cmds.add_parser(
        "webhook",
        help="the emulated host's webhooks: register one, list, deliveries sent, faults",
        description="The emulator POSTs a signed delivery, in the host's own format, to every "
        "registered URL when a repository is archived, unarchived, renamed, transferred or "
        "deleted, or a pull request changes.",
    )
    p.add_argument("action", choices=["add", "list", "clear", "deliveries", "faults"],
                   help="add a webhook, list or clear them, show the deliveries sent, or set "
                   "the delivery faults")  # fmt: skip
    p.add_argument("target", nargs="?", help="add: the URL to deliver to "
                   "(e.g. http://127.0.0.1:7800/webhooks/SERVICE)")  # fmt: skip
    p.add_argument("--secret-env", help="add: the environment variable holding the secret")
    p.add_argument("--drop-rate", type=float, help="faults: fraction of deliveries never sent")
    p.add_argument("--drop-next", type=int, help="faults: never send the next N")
    p.add_argument("--duplicate-next", type=int, help="faults: send the next N twice")
    p.add_argument("--url", default=default_url, help=f"emulator URL (default {default_url})")
    p.add_argument("--kind", default="github", choices=[k.value for k in HostKind],
                   help="which emulated host (default github)")  # fmt: skip
    p.set_defaults(func=f"{__name__}:cmd_webhook")


async def cmd_webhook(args: argparse.Namespace) -> int:
    from repo_updater.emulator.admin_client import EmulatorAdmin, EmulatorAdminError

    kind: str = args.kind
    async with EmulatorAdmin(args.url) as admin:
        try:
            if args.action == "add":
                if not args.target or not args.secret_env:
                    print("error: webhook add needs a URL and --secret-env", file=sys.stderr)
                    return 2
                secret = os.environ.get(args.secret_env)
                if not secret:
                    print(f"error: environment variable {args.secret_env} is not set",
                          file=sys.stderr)  # fmt: skip
                    return 2
                hook = await admin.add_webhook(kind, args.target, secret)
                print(f"webhook {hook['id']}: the emulated {kind} delivers to {hook['url']}")
            elif args.action == "list":
                for hook in await admin.webhooks(kind):
                    print(f"{hook['id']}  {hook['url']}")
            elif args.action == "clear":
                await admin.clear_webhooks(kind)
                print(f"removed every webhook of the emulated {kind}")
            elif args.action == "deliveries":
                for d in await admin.webhook_deliveries(kind):
                    print(json.dumps(d))
            else:
                fields = {k: v for k, v in (("drop_rate", args.drop_rate),
                          ("drop_next", args.drop_next), ("duplicate_next", args.duplicate_next))
                          if v is not None}  # fmt: skip
                print(json.dumps(await admin.set_webhook_faults(kind, **fields)))
        except EmulatorAdminError as exc:
            print(f"error: emulator: {exc}", file=sys.stderr)
            return 2
    return 0
