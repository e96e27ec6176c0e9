"""``/openapi.json``: an OpenAPI 3.1 document generated from the route table and the models
each route declares (``api.endpoint``), never written by hand. pydantic's JSON Schema (2020-12)
is what OpenAPI 3.1 uses, so the models go in as they are.

Every operation documents its success answer and the errors its access can give: 400, 421,
500 and 503 for all; 401 for reads; 401, 403, 413 and 415 for writes; plus its own
(404, 409, ...). A route without a declaration cannot be documented, and ``build_api`` refuses
to start with one.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from repo_updater.entrypoints.api.endpoint import Access, Endpoint, endpoint, endpoint_of_handler
from repo_updater.entrypoints.api.models import Error

routes = web.RouteTableDef()

REF = "#/components/schemas/{model}"
Mode = Literal["validation", "serialization"]


class UndocumentedRoute(RuntimeError):
    pass


def operations(web_app: web.Application) -> list[tuple[str, str, Endpoint, str]]:
    """``(method, path template, declaration, handler name)`` of every route but HEAD."""
    out = []
    for route in web_app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = str(info.get("path") or info.get("formatter") or "")
        spec = endpoint_of_handler(route.handler)
        if spec is None:
            raise UndocumentedRoute(
                f"{route.method} {path} declares no @endpoint(...) (see api/endpoint.py)"
            )
        out.append((route.method, path, spec, getattr(route.handler, "__name__", "handler")))
    return out


def document(web_app: web.Application, *, reads_open: bool, version: str) -> dict[str, Any]:
    ops = operations(web_app)
    wanted: list[tuple[type[BaseModel], Mode]] = [(Error, "serialization")]
    for _, _, spec, _ in ops:
        for model in (spec.path, spec.query, spec.body, spec.form):
            if model is not None:
                wanted.append((model, "validation"))
        if spec.response is not None:
            wanted.append((spec.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, defs = models_json_schema(unique, ref_template=REF)
    schemas: dict[str, Any] = defs.get("$defs", {})

    def ref(model: type[BaseModel], mode: Mode) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    def resolved(model: type[BaseModel]) -> dict[str, Any]:
        name = str(ref(model, "validation")["$ref"]).rsplit("/", 1)[1]
        return dict(schemas[name])

    paths: dict[str, dict[str, Any]] = {}
    for method, path, spec, name in ops:
        op = _operation(spec, path, name, reads_open, ref, resolved)
        paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "repo-updater API",
            "version": version,
            "description": "Repositories and batch-change changesets, kept in step with the "
            "code hosts. Every list is cursor-paged (`after`, `limit`; the answer's `next`). "
            'Every error is JSON `{"error": ...}`.',
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "repo_updater_token"},
            },
        },
    }


def _operation(
    spec: Endpoint, path: str, name: str, reads_open: bool, ref: Any, resolved: Any
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": spec.summary, "operationId": name}
    if spec.description:
        op["description"] = spec.description
    params = _parameters(spec.path, "path", resolved) + _parameters(spec.query, "query", resolved)
    declared = {p["name"] for p in params if p["in"] == "path"}
    for segment in path.split("/"):  # path parameters a route parses itself
        if segment.startswith("{") and segment[1:-1].split(":")[0] not in declared:
            params.append({"name": segment[1:-1].split(":")[0], "in": "path", "required": True,
                           "schema": {"type": "string"}})  # fmt: skip
    if params:
        op["parameters"] = params
    if spec.body is not None:
        body = {"application/json": {"schema": ref(spec.body, "validation")}}
        op["requestBody"] = {"required": True, "content": body}
    elif spec.form is not None:
        form = {"application/x-www-form-urlencoded": {"schema": ref(spec.form, "validation")}}
        op["requestBody"] = {"required": True, "content": form}
    if spec.access is Access.WRITE:
        op["security"] = [{"bearer": []}]
    elif spec.access is Access.READ:
        op["security"] = [{"bearer": []}, {"cookie": []}] + ([{}] if reads_open else [])
    else:
        op["security"] = []
    op["responses"] = _responses(spec, ref)
    return op


def _parameters(model: type[BaseModel] | None, where: str, resolved: Any) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = resolved(model)
    required = set(schema.get("required", ()))
    out = []
    for field, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {"name": field, "in": where,
                                 "required": where == "path" or field in required}  # fmt: skip
        prop = dict(prop)
        if "description" in prop:
            param["description"] = prop.pop("description")
        prop.pop("title", None)
        param["schema"] = prop
        out.append(param)
    return out


def _responses(spec: Endpoint, ref: Any) -> dict[str, Any]:
    def described(status: int) -> str:
        return HTTPStatus(status).phrase

    success: dict[str, Any] = {"description": described(spec.status)}
    if spec.response is not None:
        success["content"] = {"application/json": {"schema": ref(spec.response, "serialization")}}
    else:
        kind = "object" if spec.content_type == "application/json" else "string"
        success["content"] = {spec.content_type: {"schema": {"type": kind}}}
    out: dict[str, Any] = {str(spec.status): success}
    statuses = {400, 500, 503, *spec.errors}
    if spec.access is not Access.OWN:
        statuses.add(421)
    if spec.access is Access.READ:
        statuses.add(401)
        if spec.content_type == "text/html":
            out["303"] = {"description": "log in first",
                          "content": {"text/html": {"schema": {"type": "string"}}}}  # fmt: skip
    if spec.access is Access.WRITE:
        statuses |= {401, 403, 413, 415}
    if spec.body is not None or spec.form is not None:
        statuses.add(413)
    error = {"application/json": {"schema": ref(Error, "serialization")}}
    html = {"text/html": {"schema": {"type": "string"}}}
    for status in sorted(statuses):
        content = html if status in spec.html_errors else error
        out[str(status)] = {"description": described(status), "content": content}
    return out


OPENAPI_KEY = web.AppKey("repo_updater_openapi", dict)


@routes.get("/openapi.json")
@endpoint(Access.PUBLIC, "This document (OpenAPI 3.1)")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_KEY])
