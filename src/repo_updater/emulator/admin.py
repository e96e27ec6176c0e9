"""The emulator's admin API: JSON in, JSON out, mounted under ``/_admin``.

``{kind}`` is a host kind: ``github``, ``gitlab``, ``gitea``, ``bitbucketServer`` (or
``bitbucket``). ``repo`` is a host-relative full name (``owner/name``). Errors answer
``{"error": "<message>"}`` with 400 (bad input) or 404 (unknown kind, repo or pull request).

- ``GET    /_admin``                      hosts and their repo counts
- ``GET    /_admin/{kind}/repos[?owner=]`` repos in id order
- ``POST   /_admin/{kind}/repos``         ``{owner, name, archived?, fork?, private?,
  description?, owner_type?: "org"|"user", review_required?}`` -> 201 repo
- ``POST   /_admin/{kind}/repo-actions``  ``{repo, action: archive|unarchive|rename|delete,
  new_name?}`` -> repo (``{"deleted": repo}`` for delete)
- ``GET    /_admin/{kind}/pulls?repo=``   pull requests of a repo
- ``POST   /_admin/{kind}/pulls``         ``{repo, title, state?: OPEN|DRAFT|CLOSED|MERGED,
  head_ref?, base_ref?, body?, check_state?}`` -> 201 pull
- ``POST   /_admin/{kind}/pull-actions``  ``{repo, number, state?, check_state?,
  review?: {author, state}}``; ``state: DELETED`` removes the pull request -> pull
- ``GET    /_admin/{kind}/faults``        current fault switches
- ``PUT    /_admin/{kind}/faults``        partial ``Faults`` fields (unknown field: 400)
- ``DELETE /_admin/{kind}/faults``        reset every switch
- ``PUT    /_admin/{kind}/token``         ``{token: str|null}``: require a token, or not
- ``GET    /_admin/{kind}/settings``      the host's configuration (``HostSettings``)
- ``PUT    /_admin/{kind}/settings``      partial ``{external_url?, viewer?, max_page_size?}``:
  the URL the host believes it has (paging links point there), GitHub's token user, Gitea's
  ``MAX_RESPONSE_ITEMS``
- ``POST   /_admin/{kind}/seed``          ``{orgs, repos_per_org, pulls_per_repo?,
  org_prefix?}`` -> ``{"created": n, "repos": total}``
- ``GET    /_admin/{kind}/stats``         ``{request_count, in_flight, max_in_flight, repos,
                                          pulls}`` (``max_in_flight``: the most requests
                                          the host served at once)
- ``DELETE /_admin/{kind}/stats``         reset ``request_count`` and ``max_in_flight``
- collaborators, visibility, groups: see ``admin_permissions``
- webhooks (registrations, delivery switches, the deliveries sent): see ``admin_webhooks``
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator.state import (
    EmulatedPull,
    EmulatedRepo,
    EmulatorState,
    Faults,
    HostState,
)

_M = TypeVar("_M", bound=BaseModel)
_RATE_FIELDS = {"rate_limit_remaining", "rate_limit_total", "rate_limit_reset_in"}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRepo(_Body):
    owner: str = Field(min_length=1)
    name: str = Field(min_length=1)
    archived: bool = False
    fork: bool = False
    private: bool = False
    description: str = ""
    owner_type: Literal["org", "user"] = "org"
    review_required: bool = False


class RepoAction(_Body):
    repo: str = Field(min_length=1)
    action: Literal["archive", "unarchive", "rename", "delete"]
    new_name: str | None = None


class NewPull(_Body):
    repo: str = Field(min_length=1)
    title: str = Field(min_length=1)
    state: Literal["OPEN", "DRAFT", "CLOSED", "MERGED"] = "OPEN"
    head_ref: str | None = None
    base_ref: str = "main"
    body: str = ""
    check_state: CheckState | None = None


class Review(_Body):
    author: str = Field(min_length=1)
    state: ReviewState


class PullAction(_Body):
    repo: str = Field(min_length=1)
    number: int
    state: HostPullState | None = None
    check_state: CheckState | None = None
    review: Review | None = None


class Seed(_Body):
    orgs: int = Field(default=1, ge=0, le=10_000)
    repos_per_org: int = Field(default=10, ge=0, le=1_000_000)
    pulls_per_repo: int = Field(default=0, ge=0, le=1_000)
    org_prefix: str = Field(default="org", min_length=1)


class Token(_Body):
    token: str | None


class Settings(_Body):
    external_url: str | None = Field(default=None, pattern=r"^https?://[^/?#]+/?$")  # origin
    viewer: str | None = Field(default=None, min_length=1)
    max_page_size: int | None = Field(default=None, ge=1, le=1000)


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


Route = Callable[[web.Request, HostState], Awaitable[web.Response]]


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application()
    admin = _Admin(state)

    async def index(_request: web.Request) -> web.Response:
        hosts = {kind.value: len(host.repos) for kind, host in state.hosts.items()}
        return _json({"hosts": hosts})

    app.router.add_get("", index)
    app.router.add_get("/", index)
    for method, path, route in (
        ("GET", "repos", admin.list_repos),
        ("POST", "repos", admin.add_repo),
        ("POST", "repo-actions", admin.repo_action),
        ("GET", "pulls", admin.list_pulls),
        ("POST", "pulls", admin.add_pull),
        ("POST", "pull-actions", admin.pull_action),
        ("GET", "faults", admin.get_faults),
        ("PUT", "faults", admin.set_faults),
        ("DELETE", "faults", admin.clear_faults),
        ("PUT", "token", admin.set_token),
        ("GET", "settings", admin.get_settings),
        ("PUT", "settings", admin.set_settings),
        ("POST", "seed", admin.seed),
        ("GET", "stats", admin.stats),
        ("DELETE", "stats", admin.reset_stats),
    ):
        app.router.add_route(method, f"/{{kind}}/{path}", _wrap(state, route))
    from repo_updater.emulator import admin_permissions  # it imports this module's helpers

    for method, path, extra in admin_permissions.ROUTES:
        app.router.add_route(method, f"/{{kind}}/{path}", _wrap(state, extra))
    from repo_updater.emulator import admin_webhooks

    for method, path, extra in admin_webhooks.routes(state):
        app.router.add_route(method, f"/{{kind}}/{path}", _wrap(state, extra))
    return app


def _wrap(state: EmulatorState, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        try:
            return await route(request, _host(state, request.match_info["kind"]))
        except AdminError as error:
            return _json({"error": str(error)}, status=error.status)

    return handler


def _host(state: EmulatorState, kind: str) -> HostState:
    if kind == "bitbucket":
        kind = HostKind.BITBUCKET_SERVER.value
    try:
        return state.host(kind)
    except (ValueError, KeyError):
        known = ", ".join(k.value for k in HostKind)
        raise AdminError(404, f"unknown host kind {kind!r} (known: {known})") from None


async def _body(request: web.Request, model: type[_M]) -> _M:
    raw = await _raw_json(request)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise AdminError(400, _describe(error)) from None


async def _raw_json(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.json()
    except ValueError:
        raise AdminError(400, "request body must be a JSON object") from None
    if not isinstance(raw, dict):
        raise AdminError(400, "request body must be a JSON object")
    return raw


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "invalid request: " + "; ".join(parts)


def _json(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


def repo_info(repo: EmulatedRepo) -> dict[str, Any]:
    return {
        "id": repo.id,
        "owner": repo.owner,
        "name": repo.name,
        "full_name": repo.full_name,
        "archived": repo.archived,
        "fork": repo.fork,
        "private": repo.private,
        "description": repo.description,
        "review_required": repo.review_required,
        "pulls": len(repo.pulls),
    }


def pull_info(repo: EmulatedRepo, pull: EmulatedPull) -> dict[str, Any]:
    return {
        "repo": repo.full_name,
        "number": pull.number,
        "title": pull.title,
        "state": pull.state.value,
        "check_state": pull.check_state.value,
        "head_ref": pull.head_ref,
        "base_ref": pull.base_ref,
        "reviews": [{"author": r.author, "state": r.state.value} for r in pull.reviews],
        "events": [{"kind": e.kind, "actor": e.actor} for e in pull.events],
    }


def faults_info(faults: Faults) -> dict[str, Any]:
    return dataclasses.asdict(faults)


def _find(host: HostState, full_name: str) -> EmulatedRepo:
    repo = host.find_repo(full_name)
    if repo is None:
        raise AdminError(404, f"no repository {full_name!r} on {host.kind.value}")
    return repo


class _Admin:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        hints = typing.get_type_hints(Faults)
        self._fault_types = {f.name: TypeAdapter(hints[f.name]) for f in dataclasses.fields(Faults)}

    async def list_repos(self, request: web.Request, host: HostState) -> web.Response:
        owner = request.query.get("owner")
        repos = (
            host.owner_repos(owner) if owner else sorted(host.repos.values(), key=lambda r: r.id)
        )
        return _json([repo_info(r) for r in repos])

    async def add_repo(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, NewRepo)
        if "/" in body.name:
            raise AdminError(400, "name must not contain '/' (put the path in owner)")
        try:
            repo = host.add_repo(
                body.owner,
                body.name,
                archived=body.archived,
                fork=body.fork,
                private=body.private,
                description=body.description,
            )
        except ValueError as error:
            raise AdminError(400, str(error)) from None
        if body.owner_type == "user":
            host.users.add(body.owner)
        repo.review_required = body.review_required
        return _json(repo_info(repo), status=201)

    async def repo_action(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, RepoAction)
        repo = _find(host, body.repo)
        if body.action == "archive":
            host.set_archived(body.repo, True)
        elif body.action == "unarchive":
            host.set_archived(body.repo, False)
        elif body.action == "rename":
            if not body.new_name:
                raise AdminError(400, "rename needs new_name")
            try:
                host.rename_repo(body.repo, body.new_name)
            except ValueError as error:
                raise AdminError(400, str(error)) from None
        else:
            host.delete_repo(body.repo)
            return _json({"deleted": repo_info(repo)})
        return _json(repo_info(repo))

    async def list_pulls(self, request: web.Request, host: HostState) -> web.Response:
        name = request.query.get("repo")
        if not name:
            raise AdminError(400, "query parameter 'repo' is required")
        repo = _find(host, name)
        return _json([pull_info(repo, p) for _, p in sorted(repo.pulls.items())])

    async def add_pull(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, NewPull)
        repo = _find(host, body.repo)
        pull = host.add_pull(
            repo.full_name,
            title=body.title,
            state=HostPullState(body.state),
            head_ref=body.head_ref,
            base_ref=body.base_ref,
            body=body.body,
        )
        if body.check_state is not None:
            pull.check_state = body.check_state
        return _json(pull_info(repo, pull), status=201)

    async def pull_action(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, PullAction)
        repo = _find(host, body.repo)
        pull = repo.pulls.get(body.number)
        if pull is None:
            raise AdminError(404, f"no pull request #{body.number} on {repo.full_name!r}")
        if body.state is HostPullState.DELETED:
            del repo.pulls[body.number]
            return _json({"deleted": pull_info(repo, pull)})
        if body.state is not None and body.state is not pull.state:
            host.set_pull_state(repo.full_name, pull.number, body.state)
        if body.check_state is not None:
            host.set_check_state(repo.full_name, pull.number, body.check_state)
        if body.review is not None:
            host.add_review(
                repo.full_name, pull.number, author=body.review.author, state=body.review.state
            )
        return _json(pull_info(repo, pull))

    async def get_faults(self, _request: web.Request, host: HostState) -> web.Response:
        return _json(faults_info(host.faults))

    async def set_faults(self, request: web.Request, host: HostState) -> web.Response:
        raw = await _raw_json(request)
        unknown = sorted(set(raw) - set(self._fault_types))
        if unknown:
            known = ", ".join(sorted(self._fault_types))
            raise AdminError(400, f"unknown fault field(s) {', '.join(unknown)} (known: {known})")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            try:
                values[name] = self._fault_types[name].validate_python(value, strict=True)
            except ValidationError as error:
                raise AdminError(400, f"{name}: {error.errors()[0]['msg']}") from None
            if isinstance(values[name], int | float) and values[name] < 0:
                raise AdminError(400, f"{name}: must be >= 0")
        status = values.get("error_status")
        if status is not None and not 400 <= status <= 599:
            raise AdminError(400, "error_status: must be an HTTP error status (400-599)")
        for name, value in values.items():
            setattr(host.faults, name, value)
        if _RATE_FIELDS & values.keys():
            host.rate_limit_reset_at = None
        return _json(faults_info(host.faults))

    async def clear_faults(self, _request: web.Request, host: HostState) -> web.Response:
        host.faults = Faults()
        host.rate_limit_reset_at = None
        return _json(faults_info(host.faults))

    async def set_token(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, Token)
        host.token = body.token or None
        return _json({"token_required": host.token is not None})

    async def get_settings(self, _request: web.Request, host: HostState) -> web.Response:
        return _json(dataclasses.asdict(host.settings))

    async def set_settings(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, Settings)
        for name in body.model_fields_set:
            value = getattr(body, name)
            setattr(host.settings, name, value.rstrip("/") if name == "external_url" else value)
        return _json(dataclasses.asdict(host.settings))

    async def seed(self, request: web.Request, host: HostState) -> web.Response:
        body = await _body(request, Seed)
        for i in range(body.orgs):
            for j in range(body.repos_per_org):
                full = f"{body.org_prefix}{i}/repo-{j}"
                if full in host.by_full_name:
                    raise AdminError(400, f"repository {full} already exists; nothing seeded")
        before = len(host.repos)
        self.state.seed(
            host.kind,
            orgs=body.orgs,
            repos_per_org=body.repos_per_org,
            pulls_per_repo=body.pulls_per_repo,
            org_prefix=body.org_prefix,
        )
        return _json({"created": len(host.repos) - before, "repos": len(host.repos)})

    async def stats(self, _request: web.Request, host: HostState) -> web.Response:
        pulls = sum(len(r.pulls) for r in host.repos.values())
        return _json(
            {
                "request_count": host.request_count,
                "in_flight": host.in_flight,
                "max_in_flight": host.max_in_flight,
                "repos": len(host.repos),
                "pulls": pulls,
            }
        )

    async def reset_stats(self, _request: web.Request, host: HostState) -> web.Response:
        host.request_count = host.max_in_flight = 0
        return _json({"request_count": 0, "max_in_flight": 0})
