"""Request input, parsed by the models a route declares (``api.endpoint``): path parameters,
query parameters and the JSON body. Anything wrong is a ``BadRequest`` (400) that names the
parameter or field, before anything is read from or written to the store.

What this rules out, beyond types and sizes: numbers that Python's ``int()`` accepts but are not
plain ASCII digits (``%D9%A3``, ``1_0``, `` 1``); NUL characters and lone surrogates (PostgreSQL
cannot store them; a lone surrogate cannot even be encoded); unknown or repeated parameters;
unknown body fields; bodies nested deeper than the JSON parser's limit (a clear error, never a
RecursionError); bodies over the route's size limit (413).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import pydantic_core
from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from repo_updater.core.domain import MAX_INT
from repo_updater.entrypoints.api.endpoint import Endpoint, endpoint_of


class ApiError(Exception):
    """An answer other than success: ``status`` and a message safe to show."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadRequest(ApiError):
    status = 400


class PayloadTooLarge(ApiError):
    status = 413


# --- field types --------------------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]{1,10}")


def _ascii_int(value: object) -> object:
    if isinstance(value, str):
        if not _DIGITS.fullmatch(value):
            raise ValueError("must be a whole number written with the digits 0-9")
        return int(value)
    return value


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


# Annotated order matters: constraints first, then the validators, so that pydantic applies the
# constraints natively and documents them (minimum, maxLength, ...) in the JSON Schema.
ASCII_INT = BeforeValidator(_ascii_int)
CLEAN = AfterValidator(_clean_text)
NO_NUL = "^[^\\u0000]*$"  # what CLEAN checks, as the JSON Schema documents it


def text(max_length: int, min_length: int = 0, **kw: Any) -> Any:
    """The constraints of a text field: ``Annotated[str, text(100), CLEAN]``."""
    return Field(min_length=min_length, max_length=max_length,
                 json_schema_extra={"pattern": NO_NUL}, **kw)  # fmt: skip


Id = Annotated[int, Field(ge=1, le=MAX_INT), ASCII_INT]


def _json_int(value: object) -> object:
    """JSON Schema counts 3.0 as an integer; true and false are not numbers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JSON_INT = BeforeValidator(_json_int)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
Limit = Annotated[
    int, Field(ge=1, le=MAX_LIMIT, description=f"page size (default {DEFAULT_LIMIT})"), ASCII_INT
]
Cursor = Annotated[
    str,
    Field(pattern=r"^[0-9]{1,10}$", description="the `next` cursor of the previous page"),
]
RankedCursor = Annotated[
    str,
    Field(pattern=r"^([0-9]\.)?[0-9]{1,10}$", description="the `next` cursor of the previous page"),
]

# A text key (a login), base64url-encoded: ``api.paging.key_cursor``.
KeyCursor = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9_-]{1,1400}$", description="the `next` cursor of the previous page"),
]


class QueryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BodyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PathModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdPath(PathModel):
    id: Id


class PageQuery(QueryModel):
    after: Cursor | None = None
    limit: Limit = DEFAULT_LIMIT


class EmptyBody(BodyModel):
    """Routes that take no body accept none, or ``{}``."""


# --- parsing ------------------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def _declared(request: web.Request, kind: str, model: type[BaseModel]) -> Endpoint:
    spec = endpoint_of(request)
    if spec is None or getattr(spec, kind) is not model:
        raise RuntimeError(f"the route parses {kind} with {model.__name__} but declares another")
    return spec


def path_params(request: web.Request, model: type[M]) -> M:
    _declared(request, "path", model)
    return _validate(model, dict(request.match_info), "path parameter")


def query_params(request: web.Request, model: type[M]) -> M:
    _declared(request, "query", model)
    raw: dict[str, str] = {}
    for key, value in request.query.items():
        if key in raw:
            raise BadRequest(f"query parameter {key!r} is given more than once")
        raw[key] = value
    return _validate(model, raw, "query parameter")


async def json_body(request: web.Request, model: type[M]) -> M:
    spec = _declared(request, "body", model)
    return _validate(model, await _read_json(request, spec), "field")


async def no_body(request: web.Request) -> None:
    """For a route that takes no body: none, or ``{}``."""
    spec = endpoint_of(request)
    assert spec is not None and spec.body is None, "no_body() on a route that declares a body"
    if request.can_read_body:
        _validate(EmptyBody, await _read_json(request, spec), "field")


async def _read_json(request: web.Request, spec: Endpoint) -> Any:
    if request.content_length is not None and request.content_length > spec.max_body:
        raise PayloadTooLarge(f"request body is larger than {spec.max_body} bytes")
    raw = await request.read()  # bounded by the application's client_max_size
    if len(raw) > spec.max_body:
        raise PayloadTooLarge(f"request body is larger than {spec.max_body} bytes")
    try:
        return pydantic_core.from_json(raw)
    except ValueError as exc:  # invalid UTF-8, lone surrogates, nesting beyond the limit, ...
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def _validate(model: type[M], data: Any, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadRequest(describe(exc, what)) from None


def describe(exc: ValidationError, what: str) -> str:
    """One line per problem (at most five), naming the parameter or field; never the input."""
    lines = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = _location(err["loc"])
        kind = err["type"]
        if not loc and kind in ("model_type", "model_attributes_type", "dict_type"):
            lines.append("request body must be a JSON object")
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            msg = "is not a known " + ("field" if what == "field" else what)
        elif kind == "missing":
            msg = "is required"
        lines.append(f"{what} {loc!r}: {msg}" if loc else msg)
    extra = len(lines) - 5
    return "; ".join(lines[:5]) + (f"; and {extra} more" if extra > 0 else "")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
