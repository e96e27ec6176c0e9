"""The emulator's admin API for who has access to what, and for visibility (mounted with the
rest of ``/_admin`` by ``admin.build_app``). Levels are ``state.LEVELS``: guest, read, triage,
write, maintain, admin; each host's API names them as that host does.

- ``GET  /_admin/{kind}/collaborators?repo=``  ``{repo, private, collaborators, groups,
  effective}`` (direct grants, group grants, and everyone's highest level)
- ``POST /_admin/{kind}/collaborators``  ``{repo, login, permission: LEVEL|null}``: add or
  change a collaborator; ``null`` removes them
- ``POST /_admin/{kind}/visibility``     ``{repo, private: bool}``
- ``PUT  /_admin/{kind}/groups``         ``{name, members: [login, ...]}`` (a team or group)
- ``POST /_admin/{kind}/group-access``   ``{repo, group, permission: LEVEL|null}``
- ``POST /_admin/{kind}/owner-members``  ``{owner, login, permission: LEVEL|null}``: a member
  of an org / group / project, with that level on each of its repos
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from repo_updater.emulator.admin import AdminError, _Body, _body, _find, _json
from repo_updater.emulator.state import EmulatedRepo, HostState

Level = Literal["guest", "read", "triage", "write", "maintain", "admin"]
Route = Callable[[web.Request, HostState], Awaitable[web.Response]]


class Collaborator(_Body):
    repo: str = Field(min_length=1)
    login: str = Field(min_length=1, max_length=255)
    permission: Level | None


class Visibility(_Body):
    repo: str = Field(min_length=1)
    private: bool


class Group(_Body):
    name: str = Field(min_length=1, max_length=255)
    members: list[str]


class GroupAccess(_Body):
    repo: str = Field(min_length=1)
    group: str = Field(min_length=1)
    permission: Level | None


class OwnerMember(_Body):
    owner: str = Field(min_length=1)
    login: str = Field(min_length=1, max_length=255)
    permission: Level | None


def access_info(host: HostState, repo: EmulatedRepo) -> dict[str, Any]:
    return {
        "repo": repo.full_name,
        "private": repo.private,
        "collaborators": dict(sorted(repo.collaborators.items())),
        "groups": dict(sorted(repo.group_access.items())),
        "effective": dict(sorted(host.effective_access(repo).items())),
    }


async def collaborators(request: web.Request, host: HostState) -> web.Response:
    name = request.query.get("repo")
    if not name:
        raise AdminError(400, "query parameter 'repo' is required")
    return _json(access_info(host, _find(host, name)))


async def set_collaborator(request: web.Request, host: HostState) -> web.Response:
    body = await _body(request, Collaborator)
    repo = _find(host, body.repo)
    if body.permission is None and body.login not in repo.collaborators:
        raise AdminError(404, f"{body.login!r} is not a collaborator of {repo.full_name!r}")
    host.set_collaborator(repo.full_name, body.login, body.permission)
    return _json(access_info(host, repo))


async def set_visibility(request: web.Request, host: HostState) -> web.Response:
    body = await _body(request, Visibility)
    repo = host.set_private(_find(host, body.repo).full_name, body.private)
    return _json(access_info(host, repo))


async def set_group(request: web.Request, host: HostState) -> web.Response:
    body = await _body(request, Group)
    host.groups[body.name] = list(dict.fromkeys(body.members))
    return _json({"name": body.name, "members": host.groups[body.name]})


async def set_group_access(request: web.Request, host: HostState) -> web.Response:
    body = await _body(request, GroupAccess)
    repo = _find(host, body.repo)
    if body.permission is None:
        repo.group_access.pop(body.group, None)
    else:
        repo.group_access[body.group] = body.permission
    return _json(access_info(host, repo))


async def set_owner_member(request: web.Request, host: HostState) -> web.Response:
    body = await _body(request, OwnerMember)
    if not host.owner_exists(body.owner):
        raise AdminError(404, f"no owner {body.owner!r} on {host.kind.value}")
    members = host.owner_members.setdefault(body.owner, {})
    if body.permission is None:
        members.pop(body.login, None)
    else:
        members[body.login] = body.permission
    return _json({"owner": body.owner, "members": dict(sorted(members.items()))})


ROUTES: tuple[tuple[str, str, Route], ...] = (
    ("GET", "collaborators", collaborators),
    ("POST", "collaborators", set_collaborator),
    ("POST", "visibility", set_visibility),
    ("PUT", "groups", set_group),
    ("POST", "group-access", set_group_access),
    ("POST", "owner-members", set_owner_member),
)
