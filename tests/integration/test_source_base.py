"""The shared host client: origin checks, redirects, Link parsing (a real loopback server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from repo_updater.core.errors import HostError
from repo_updater.sources.http import HostClient, RetryPolicy, parse_next_link


@pytest.fixture
async def server() -> AsyncIterator[str]:
    seen_tokens: list[str | None] = []

    async def old(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location="/repositories/7")

    async def new(request: web.Request) -> web.Response:
        seen_tokens.append(request.headers.get("PRIVATE-TOKEN"))
        return web.json_response({"id": 7})

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(location="http://198.51.100.1/steal")

    app = web.Application()
    app.add_routes([web.get("/repos/a/old", old), web.get("/repositories/7", new),
                    web.get("/away", elsewhere)])  # fmt: skip
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def client(url: str) -> HostClient:
    return HostClient(base_url=url, headers={"PRIVATE-TOKEN": "tok-123"}, secrets=("tok-123",),
                      retry=RetryPolicy(attempts=1, backoff=0.01))  # fmt: skip


async def test_same_origin_redirect_is_followed_with_credentials(server: str) -> None:
    c = client(server)
    data, _ = await c.get_json("/repos/a/old")
    await c.aclose()
    assert data == {"id": 7}


async def test_redirect_or_link_to_another_origin_is_refused(server: str) -> None:
    c = client(server)
    with pytest.raises(HostError, match="refusing to send credentials") as err:
        await c.get_json("/away")
    with pytest.raises(HostError, match="refusing to send credentials"):
        await c.get_json("http://203.0.113.9/api/v4/groups/x/projects?page=2")
    await c.aclose()
    assert "tok-123" not in str(err.value)


def test_link_header_parsing() -> None:
    link = '<https://h/x?page=2>; rel="next", <https://h/x?page=9>; rel="last"'
    assert parse_next_link({"link": link}) == "https://h/x?page=2"
    assert parse_next_link({"link": '<https://h/x?page=1>; rel="prev"'}) is None
    assert parse_next_link({}) is None
    with pytest.raises(HostError, match="malformed Link header"):
        parse_next_link({"link": "page=2; next"})
