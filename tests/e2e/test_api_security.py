"""Nobody gets in uninvited (DESIGN invariant 7; issue 7, item 4), over real HTTP on loopback
with a real store: writes need a write token, JSON and no foreign Origin; the Host header must
name this server; reads are open only on loopback while the config says so; the dashboard
login cookie reads but never writes; revoked tokens stop at once; tokens never echo back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.entrypoints.api import ExposureRefused, build_api, running_api
from repo_updater.entrypoints.api.endpoint import Access
from repo_updater.entrypoints.api.openapi import operations
from repo_updater.service_layer.api_tokens import Scope
from repo_updater.store.api_tokens import delete_token
from repo_updater.store.schema import metadata
from tests.support.api import bearer, make_token


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[App]:
    config = parse_config({"database": store_url, "api": {"forced_sync_min_gap": 0}}, {})
    async with open_app(config, {}) as built:
        yield built


@pytest.fixture
async def closed_reads(store_url: str) -> AsyncIterator[App]:
    """An app whose config closes reads on loopback too (as on any other address)."""
    config = parse_config({"database": store_url, "api": {"open_reads": False}}, {})
    async with open_app(config, {}) as built:
        yield built


async def rows(engine: AsyncEngine) -> dict[str, list[Any]]:
    out = {}
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            out[table.name] = [tuple(r) for r in await conn.execute(sa.select(table))]
    return out


def write_routes(app: App) -> list[tuple[str, str]]:
    """Every write route of the server, with its path parameters filled in."""
    out = []
    for method, path, spec, _ in operations(build_api(app)):
        if spec.access is Access.WRITE:
            out.append((method, path.replace("{id}", "1").replace("{name}", "gh")))
    return out


async def test_nothing_unauthenticated_or_cross_origin_changes_state(app: App) -> None:
    write = await make_token(app.api_engine, Scope.WRITE, "writer")
    read = await make_token(app.api_engine, Scope.READ, "reader")
    routes = write_routes(app)
    assert ("POST", "/api/batch-changes") in routes and len(routes) >= 5
    json = {"Content-Type": "application/json"}
    attempts: list[tuple[dict[str, str], int, str]] = [
        (json, 401, "write token"),  # no token
        ({**json, **bearer("rut_not-a-token")}, 401, "not valid"),
        ({**json, "Authorization": "Basic dXNlcjpwYXNz"}, 401, "Bearer"),
        ({**json, **bearer(read)}, 403, "read scope"),
        # A browser "simple" POST from any page: text/plain, a foreign Origin.
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403, "origin"),
        ({**bearer(write), "Content-Type": "text/plain"}, 415, "application/json"),
        ({**bearer(write), "Content-Type": "application/x-www-form-urlencoded"}, 415, "JSON"),
        ({**bearer(write), **json, "Origin": "http://evil.example"}, 403, "origin"),
        ({**bearer(write), **json, "Origin": "null"}, 403, "origin"),
        ({**bearer(write), **json, "Sec-Fetch-Site": "cross-site"}, 403, "origin"),
        ({**bearer(write), **json, "Host": "evil.example"}, 421, "Host"),  # DNS rebinding
    ]
    before = await rows(app.engine)
    async with running_api(app, port=0) as url, httpx.AsyncClient(base_url=url) as client:
        failures = []
        for method, path in routes:
            for headers, status, word in attempts:
                r = await client.request(method, path, headers=headers, content=b'{"name": "x"}')
                body = r.json() if r.headers["content-type"].startswith("application/") else {}
                if r.status_code != status or word.lower() not in str(body.get("error")).lower():
                    failures.append(f"{method} {path} {headers}: {r.status_code} {r.text}")
                if status == 401:
                    assert r.headers["WWW-Authenticate"] == "Bearer"
                assert write not in r.text and "rut_not-a-token" not in r.text
        assert not failures, "\n".join(failures)
        assert await rows(app.engine) == before
        # The same request with the write token, JSON and this page's own Origin works.
        ok = await client.post(
            "/api/batch-changes",
            json={"name": "x"},
            headers={**bearer(write), "Origin": url},
        )
        assert ok.status_code == 201, ok.text


async def test_reads_are_open_on_loopback_and_the_host_must_be_this_server(app: App) -> None:
    async with running_api(app, port=0) as url, httpx.AsyncClient(base_url=url) as client:
        port = url.rsplit(":", 1)[1]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
            r = await client.get("/api/batch-changes", headers={"Host": host})
            assert r.status_code == 200, (host, r.text)
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", "", "a b"):
            r = await client.get("/api/batch-changes", headers={"Host": host})
            assert r.status_code == 421, (host, r.text)
            assert "allowed_hosts" in r.json()["error"]
        # A token that is presented must be valid, open reads or not.
        r = await client.get("/api/batch-changes", headers=bearer("rut_wrong"))
        assert r.status_code == 401 and "not valid" in r.json()["error"]


async def test_closed_reads_need_a_token_and_the_login_cookie_reads_only(
    closed_reads: App,
) -> None:
    app = closed_reads
    read = await make_token(app.api_engine, Scope.READ, "reader")
    async with (
        running_api(app, port=0) as url,
        httpx.AsyncClient(base_url=url, follow_redirects=False) as client,
    ):
        r = await client.get("/api/batch-changes")
        assert r.status_code == 401 and "tokens create" in r.json()["error"]
        assert (await client.get("/api/batch-changes", headers=bearer(read))).status_code == 200
        assert (await client.get("/healthz")).status_code == 200  # public
        assert (await client.get("/openapi.json")).status_code == 200  # public
        r = await client.get("/")
        assert (r.status_code, r.headers["Location"]) == (303, "/login")
        assert (await client.get("/static/app.js")).status_code == 200  # no data in it
        assert (await client.get("/api/pulse")).status_code == 401  # what the page polls

        r = await client.post("/login", data={"token": "rut_wrong"})
        assert r.status_code == 401 and "not valid" in r.text and "rut_wrong" not in r.text
        r = await client.post("/login", data={"token": read}, headers={"Origin": "http://e.x"})
        assert r.status_code == 403  # no logging in from another site
        r = await client.post("/login", data={"token": read})
        assert r.status_code == 303 and r.headers["Location"] == "/"
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert (await client.get("/")).status_code == 200  # the cookie is sent back
        assert (await client.get("/api/pulse")).status_code == 200  # the page's own reads
        assert (await client.get("/api/repos")).status_code == 200

        # The cookie never authenticates a write, even a well-formed one from this origin.
        write = await client.post("/api/batch-changes", json={"name": "x"}, headers={"Origin": url})
        assert write.status_code == 401

        async with app.api_engine.begin() as conn:
            await delete_token(conn, "reader")
        r = await client.get("/api/repos")
        assert r.status_code == 401 and "log in again" in r.json()["error"]
        r = await client.get("/api/repos", headers=bearer(read))
        assert r.status_code == 401  # revoked: stops at once


async def test_serve_refuses_beyond_loopback_while_no_token_exists(app: App) -> None:
    """Refused before anything listens (no socket is opened on 0.0.0.0 here)."""
    with pytest.raises(ExposureRefused, match="tokens create"):
        async with running_api(app, host="0.0.0.0", port=0):
            pass
    with pytest.raises(ExposureRefused):
        async with running_api(app, host="::", port=0):
            pass
