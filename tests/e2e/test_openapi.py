"""``/openapi.json`` matches the server: every route is documented and every documented
operation is a route; each names its access and its answers; a route that declares nothing
cannot be served. (Whether the answers match the document is tests/e2e/test_api_fuzz.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.entrypoints.api import build_api
from repo_updater.entrypoints.api.openapi import UndocumentedRoute, operations
from tests.support.api import api_client


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[App]:
    async with open_app(parse_config({"database": store_url}, {}), {}) as built:
        yield built


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


async def test_every_route_is_documented_and_every_documented_path_exists(app: App) -> None:
    async with api_client(app) as client:
        doc = await client.get("/openapi.json")
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in build_api(app).router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert documented == served
    assert ("post", "/api/batch-changes/{id}/changesets") in documented
    assert doc["openapi"].startswith("3.1")

    schemas = doc["components"]["schemas"]
    assert {r.rsplit("/", 1)[1] for r in refs(doc)} <= set(schemas)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op["summary"] and "security" in op, where
            assert any(code.startswith("2") or code == "303" for code in op["responses"]), where
            assert {"400", "500"} <= set(op["responses"]), where
            if op["security"] == [{"bearer": []}]:  # writes
                assert {"401", "403", "415"} <= set(op["responses"]), where
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert f"{{{param['name']}}}" in path and param["required"], where
    json.dumps(doc)  # plain JSON throughout


def test_a_route_that_declares_nothing_is_refused() -> None:
    routes = web.RouteTableDef()

    @routes.get("/api/undeclared")
    async def undeclared(request: web.Request) -> web.Response:
        raise AssertionError("never called")

    web_app = web.Application()
    web_app.add_routes(routes)
    with pytest.raises(UndocumentedRoute, match="GET /api/undeclared"):
        operations(web_app)
