"""``HostClient`` over ``AiohttpTransport`` (issue 12, item 7): what the retry logic decides on
maps as it did with httpx's own transport. A connection that cannot be made is retried even for
a write (it never left); a timeout waiting for the answer is not (it may have been applied);
bodies are decoded as httpx did (gzip); the URL goes out as encoded; the token stays out of
errors. A real loopback server; a closed port on 127.0.0.1 for an unreachable host."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from repo_updater.core.errors import HostError
from repo_updater.core.ports import RequestCounter
from repo_updater.sources.http import HostClient, RetryPolicy

TOKEN = "tok-s3cr3t-value"


class Server:
    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.paths: list[str] = []
        self.url = ""


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()

    async def slow(request: web.Request) -> web.Response:
        state.hits["slow"] = state.hits.get("slow", 0) + 1
        await asyncio.sleep(1.0)
        return web.json_response({})

    async def zipped(request: web.Request) -> web.Response:
        body = gzip.compress(json.dumps({"items": list(range(500))}).encode())
        return web.Response(
            body=body,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def echo(request: web.Request) -> web.Response:
        state.paths.append(request.raw_path)
        body = await request.read()
        return web.json_response(
            {"auth": request.headers.get("Authorization"), "body": body.decode() or None}
        )

    app = web.Application()
    app.add_routes([web.post("/slow", slow), web.get("/zipped", zipped),
                    web.get("/projects/{id}", echo), web.post("/echo", echo)])  # fmt: skip
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


def client(url: str, *, timeout: float = 5.0, counter: RequestCounter | None = None) -> HostClient:
    return HostClient(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        secrets=(TOKEN,),
        retry=RetryPolicy(attempts=3, backoff=0.01),
        timeout=timeout,
        counter=counter or RequestCounter(),
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_host_that_cannot_be_reached_is_retried_even_for_a_write() -> None:
    counter = RequestCounter()
    c = client(f"http://127.0.0.1:{closed_port()}", counter=counter)
    with pytest.raises(HostError) as err:
        await c.request("POST", "/comment", idempotent=False, json={"body": "hi"})
    await c.aclose()
    assert counter.count == 3  # never left: safe to send again
    assert TOKEN not in str(err.value)


async def test_a_write_that_timed_out_waiting_for_the_answer_is_not_repeated(
    server: Server,
) -> None:
    c = client(server.url, timeout=0.2)
    with pytest.raises(HostError, match="timed out"):
        await c.request("POST", "/slow", idempotent=False)
    await c.aclose()
    assert server.hits["slow"] == 1


async def test_gzip_bodies_are_decoded_and_urls_go_out_as_encoded(server: Server) -> None:
    c = client(server.url)
    data, _ = await c.get_json("/zipped")
    assert data == {"items": list(range(500))}
    echoed, _ = await c.get_json("/projects/group%2Fsub%2Fproject")
    posted, _ = await c.request_json("POST", "/echo", json={"a": 1})
    await c.aclose()
    assert server.paths[0] == "/projects/group%2Fsub%2Fproject"
    assert echoed["auth"] == f"Bearer {TOKEN}"
    assert json.loads(posted["body"]) == {"a": 1}
