"""The emulator's admin API for webhooks (mounted with the rest of ``/_admin``):

- ``GET    /_admin/{kind}/webhooks``            the host's hooks (secrets not shown)
- ``POST   /_admin/{kind}/webhooks``            ``{url, secret}`` -> 201 hook: deliveries of
  every change on that host go to ``url``, signed with ``secret`` as the host signs
- ``DELETE /_admin/{kind}/webhooks``            remove every hook of the host
- ``GET    /_admin/{kind}/webhook-faults``      the delivery switches
- ``PUT    /_admin/{kind}/webhook-faults``      partial ``{drop_rate, drop_next,
  duplicate_rate, duplicate_next, retries, retry_delay}``
- ``GET    /_admin/{kind}/webhook-deliveries``  the deliveries sent (newest last): event,
  action, delivery id, repo, last status, attempts, dropped, duplicated
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import Field

from repo_updater.emulator.admin import _Body, _body, _json
from repo_updater.emulator.state import EmulatorState, HostState
from repo_updater.emulator.webhooks import Hook, HookFaults

Route = Callable[[web.Request, HostState], Awaitable[web.Response]]


class NewHook(_Body):
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2000)
    secret: str = Field(min_length=1, max_length=500)


class Faults(_Body):
    drop_rate: float | None = Field(None, ge=0, le=1)
    drop_next: int | None = Field(None, ge=0)
    duplicate_rate: float | None = Field(None, ge=0, le=1)
    duplicate_next: int | None = Field(None, ge=0)
    retries: int | None = Field(None, ge=0, le=20)
    retry_delay: float | None = Field(None, ge=0, le=60)


def _hook(hook: Hook) -> dict[str, Any]:
    return {"id": hook.id, "url": hook.url}


def routes(state: EmulatorState) -> tuple[tuple[str, str, Route], ...]:
    sender = state.webhooks

    async def list_hooks(_request: web.Request, host: HostState) -> web.Response:
        return _json([_hook(h) for h in sender.hooks(host.kind)])

    async def add_hook(request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, NewHook)
        return _json(_hook(sender.add_hook(host.kind, body.url, body.secret)), status=201)

    async def clear_hooks(_request: web.Request, host: HostState) -> web.Response:
        sender.clear_hooks(host.kind)
        return _json([])

    async def get_faults(_request: web.Request, host: HostState) -> web.Response:
        return _json(dataclasses.asdict(sender.faults(host.kind)))

    async def set_faults(request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, Faults)
        faults = dataclasses.replace(
            sender.faults(host.kind),
            **{k: v for k, v in body.model_dump().items() if v is not None},
        )
        sender.set_faults(host.kind, faults)
        return _json(dataclasses.asdict(faults))

    async def deliveries(_request: web.Request, host: HostState) -> web.Response:
        return _json([dataclasses.asdict(d) for d in sender.deliveries(host.kind)])

    return (
        ("GET", "webhooks", list_hooks),
        ("POST", "webhooks", add_hook),
        ("DELETE", "webhooks", clear_hooks),
        ("GET", "webhook-faults", get_faults),
        ("PUT", "webhook-faults", set_faults),
        ("GET", "webhook-deliveries", deliveries),
    )


__all__ = ["HookFaults", "routes"]
