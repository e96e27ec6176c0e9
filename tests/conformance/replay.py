"""Replaying recorded host answers through a source with ``httpx.MockTransport`` (the one place
a mock transport is right: it stands in for the real host, answering as it was recorded), and
recording which fields of each answer a source reads.

A fixture (``fixtures/<host>/<name>.json``) names the documentation its answers follow and
lists exchanges::

    {"about": "...", "docs": ["https://..."], "base_url": "https://api.github.com",
     "exchanges": [{"request": "GET /orgs/acme/repos?per_page=100",
                    "status": 200, "headers": {...}, "body": ...}, ...]}

A request matches an exchange by method, path and query parameters (in any order); each
exchange answers once, in order. A header value ``{now+N}`` is the epoch second N seconds from
now (a recording's absolute reset times would be stale).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml

from tests.conformance.speccheck import endpoint_pattern

FIXTURES = Path(__file__).parent / "fixtures"
SPECS = Path(__file__).parent / "specs"
_NOW = re.compile(r"^\{now\+(\d+)\}$")


def _request_key(method: str, target: str) -> tuple[str, str, list[tuple[str, str]]]:
    parts = urlsplit(target)
    return method.upper(), parts.path, sorted(parse_qsl(parts.query, keep_blank_values=True))


@dataclass
class Replay:
    """The recorded host: a transport for the source, and what was asked of it."""

    fixture: dict[str, Any]
    served: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    _used: set[int] = field(default_factory=set)

    @classmethod
    def load(cls, name: str) -> Replay:
        fixture = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
        assert fixture.get("docs"), f"{name}: a fixture names the documentation it follows"
        return cls(fixture)

    @property
    def base_url(self) -> str:
        return str(self.fixture["base_url"])

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        asked = _request_key(request.method, request.url.raw_path.decode())
        line = f"{request.method} {request.url.raw_path.decode()}"
        if request.url.host != httpx.URL(self.base_url).host:
            self.unmatched.append(f"{line} (to {request.url.host})")
            return httpx.Response(599, json={"message": "not recorded: another host"})
        for i, exchange in enumerate(self.fixture["exchanges"]):
            method, _, target = str(exchange["request"]).partition(" ")
            if i not in self._used and _request_key(method, target) == asked:
                self._used.add(i)
                self.served.append(line)
                return self._response(exchange)
        self.unmatched.append(line)
        return httpx.Response(599, json={"message": f"not recorded: {line}"})

    @staticmethod
    def _response(exchange: dict[str, Any]) -> httpx.Response:
        headers = {}
        for name, value in exchange.get("headers", {}).items():
            match = _NOW.match(str(value))
            headers[name] = str(int(time.time()) + int(match[1])) if match else str(value)
        body = exchange.get("body")
        content = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            headers.setdefault("content-type", "application/json; charset=utf-8")
        return httpx.Response(int(exchange.get("status", 200)), headers=headers, content=content)

    def assert_all_used(self) -> None:
        """Every recorded exchange was asked for, and nothing else was."""
        assert self.unmatched == []
        unused = [e["request"] for i, e in enumerate(self.fixture["exchanges"])
                  if i not in self._used]  # fmt: skip
        assert unused == []


# --- which fields a source reads -------------------------------------------------------------


class TrackedDict(dict[str, Any]):
    """A JSON object that notes the keys read from it (``[]``, ``get``, ``in``)."""

    def __init__(self, data: dict[str, Any], prefix: str, reads: set[str]) -> None:
        super().__init__({k: _track(v, f"{prefix}{k}.", reads) for k, v in data.items()})
        self._prefix, self._reads = prefix, reads

    def _note(self, key: object) -> None:
        if isinstance(key, str) and not key.startswith("_"):  # "_x": the source's own notes
            self._reads.add(f"{self._prefix}{key}")

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


def _track(value: Any, prefix: str, reads: set[str]) -> Any:
    if isinstance(value, dict):
        return TrackedDict(value, prefix, reads)
    if isinstance(value, list):
        return [_track(item, prefix, reads) for item in value]
    return value


@dataclass
class ReadLog:
    """The fields read from each endpoint's answers, as ``field`` or ``nested.field``."""

    api_path: str  # the API root's path, e.g. "/api/v1"; stripped before matching endpoints
    reads: dict[str, set[str]] = field(default_factory=dict)

    def wrap(self, data: Any, response: httpx.Response) -> Any:
        path = response.request.url.path.removeprefix(self.api_path)
        key = f"{response.request.method} {path}"
        return _track(data, "", self.reads.setdefault(key, set()))


def track_reads(monkeypatch: pytest.MonkeyPatch, log: ReadLog, *modules: Any) -> None:
    """Make ``decode_json`` (of ``sources.http`` and of each module that imported it) hand out
    tracked objects."""
    from repo_updater.sources import http

    original = http.decode_json

    def decode(response: httpx.Response, where: str) -> Any:
        return log.wrap(original(response, where), response)

    for module in (http, *modules):
        monkeypatch.setattr(module, "decode_json", decode)


def excerpt(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SPECS / name).read_text(encoding="utf-8"))
    return loaded


def _declared(schema: dict[str, Any], read: str) -> bool:
    node: Any = schema.get("properties", {})
    for part in read.split("."):
        if not isinstance(node, dict):
            return True  # declared as a plain object: its insides are not listed
        if part not in node:
            return False
        node = node[part]
    return True


def undeclared_reads(spec: dict[str, Any], log: ReadLog) -> Iterator[str]:
    """Reads of fields the excerpt does not list for that endpoint's answer (a field the
    excerpt lists as ``absent`` may be read: the source then handles its absence)."""
    endpoints = [(endpoint_pattern(e), about) for e, about in spec["endpoints"].items()]
    for request, reads in sorted(log.reads.items()):
        method, _, path = request.partition(" ")
        matches = [a for (m, rx), a in endpoints if m == method and rx.match(path)]
        if not matches:
            yield f"{request}: not an endpoint of the excerpt"
            continue
        names = str(matches[0]["response"]).strip("[]").split("|")
        for read in sorted(reads):
            schemas = [spec["schemas"][n] for n in names]
            absent = any(read in s.get("absent", []) for s in schemas)
            if not absent and not all(_declared(s, read) for s in schemas):
                yield f"{request}: reads {read}, which the excerpt does not list"
