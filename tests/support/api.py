"""Calling the API as a client would: a write token created in the store (as `repo-updater
tokens create` does) and an httpx client that sends it, with JSON, on every write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.bootstrap import App, utcnow
from repo_updater.entrypoints.api import running_api
from repo_updater.service_layer.api_tokens import Scope, create_token

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


async def make_token(engine: AsyncEngine, scope: Scope = Scope.WRITE, name: str = "") -> str:
    """A new API token in the store behind ``engine``."""
    async with engine.begin() as conn:
        return await create_token(conn, name or f"tests-{scope.value}", scope, utcnow())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiClient:
    """An httpx client on a running API. Writes carry the token and ``Content-Type:
    application/json`` unless the call gives its own headers; reads carry nothing (they are
    open on loopback) unless ``read_token`` is set."""

    app: App
    client: httpx.AsyncClient
    token: str
    read_token: str | None = None
    forbidden_text: str | None = None  # a secret no answer may contain

    async def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if method.upper() in WRITE_METHODS:
            headers.setdefault("Authorization", f"Bearer {self.token}")
            headers.setdefault("Content-Type", "application/json")
        elif self.read_token is not None:
            headers.setdefault("Authorization", f"Bearer {self.read_token}")
        response = await self.client.request(method, path, headers=headers, **kw)
        if self.forbidden_text is not None:
            assert self.forbidden_text not in response.text
        return response

    async def get(self, path: str, **kw: Any) -> Any:
        response = await self.call("GET", path, **kw)
        assert response.status_code == 200, response.text
        return response.json()

    async def items(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paged list, following ``next``."""
        out: list[Any] = []
        after = None
        while True:
            query = {**params, **({"after": after} if after else {})}
            page = await self.get(path, params=query)
            out += page["items"]
            after = page["next"]
            if after is None:
                return out

    async def post(self, path: str, expect: int, **kw: Any) -> Any:
        response = await self.call("POST", path, **kw)
        assert response.status_code == expect, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()


@asynccontextmanager
async def api_client(app: App, token: str | None = None, **kw: Any) -> AsyncIterator[ApiClient]:
    """The app's API on a free loopback port, and a client holding ``token`` (default: a new
    write token)."""
    token = token if token is not None else await make_token(app.api_engine)
    async with (
        running_api(app, port=0) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield ApiClient(app, client, token, **kw)
