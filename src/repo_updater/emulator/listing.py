"""Helpers the GitLab, Gitea and Bitbucket emulator routes share: query parameters, paging
links, timestamp formats and request bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from yarl import URL


def int_param(request: web.Request, name: str, default: int, *, lo: int, hi: int) -> int:
    """A positive integer query parameter clamped into ``[lo, hi]`` (400 if not a number)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(
            text=f'{{"message": "{name} is invalid"}}', content_type="application/json"
        ) from None
    return max(lo, min(hi, value))


def page_url(
    request: web.Request,
    *,
    external: str | None = None,
    keep_scheme: bool = False,
    **params: int | str,
) -> str:
    """The request's absolute URL with some query parameters replaced.

    ``external``: the URL the host is configured with (``HostSettings.external_url``). Hosts
    build paging links from it, not from the URL the client used: GitLab's
    ``OffsetHeaderBuilder`` takes host and port from its config and keeps the request's scheme
    and path (``keep_scheme``); Gitea's ``genAPILinks`` puts ``ROOT_URL`` before the path."""
    url: URL = request.url.update_query({k: str(v) for k, v in params.items()})
    if external is not None:
        ext = URL(external)
        url = url.with_host(ext.host or "").with_port(ext.explicit_port)
        if not keep_scheme:
            url = url.with_scheme(ext.scheme)
    return str(url)


def link_header(links: dict[str, str]) -> str:
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in links.items())


def iso(ts: datetime | None, *, millis: bool = False) -> str | None:
    """``2024-05-01T12:00:00Z`` (GitLab style adds milliseconds)."""
    if ts is None:
        return None
    ts = ts.astimezone(UTC)
    if millis:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch_ms(ts: datetime | None) -> int | None:
    return None if ts is None else int(ts.timestamp() * 1000)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or form fields; 400 when it is neither."""
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(
                text='{"message": "body must be a JSON object"}', content_type="application/json"
            )
        return body
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}
