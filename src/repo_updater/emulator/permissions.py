"""Who has access to a repository, as each emulated host answers it (routes added to each host's
sub-app by its ``build_app``). Levels are kept host-neutral in the state (``state.LEVELS``) and
named here as each host names them; every list pages as that host pages.

- GitHub ``GET /repos/{o}/{r}/collaborators`` (``affiliation=outside|direct|all``, default all;
  ``permission``; ``per_page`` <= 100, ``page``; ``Link``): users with ``permissions`` flags and
  ``role_name``. ``all`` includes team members and org members; a user's repo lists its owner.
- GitLab ``GET /projects/{id}/members`` (direct) and ``/members/all`` (also inherited from the
  group and shared groups; guests included: GitLab lists them), ``access_level`` 10..50,
  ``X-Page``/``X-Next-Page``/``X-Total`` and ``Link`` (on ``settings.external_url`` when set,
  as the listing's).
- Gitea ``GET /repos/{o}/{r}/collaborators`` (users, no level; ``page``/``limit`` <= 50,
  ``X-Total-Count``, ``Link`` starting with ``settings.external_url`` when set),
  ``.../collaborators/{user}/permission`` (effective level), ``.../teams`` (405 for a user's
  repo; the owner's members appear as all-repository teams, ``Owners`` for admins),
  ``GET /teams/{id}/members``, ``GET /orgs/{org}``, ``GET /users/{name}``.
- Bitbucket ``.../repos/{slug}/permissions/users`` and ``/groups`` (REPO_*),
  ``/projects/{key}/permissions/users`` and ``/groups`` (PROJECT_*; the owner's members), and
  ``GET /admin/groups/more-members?context={group}``, all in Bitbucket's paged envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from repo_updater.emulator import listing
from repo_updater.emulator.listing import int_param, link_header
from repo_updater.emulator.state import LEVELS, EmulatedRepo, HostState

RepoLookup = Callable[[web.Request], EmulatedRepo | web.Response]

_GITHUB_FLAGS = ("pull", "triage", "push", "maintain", "admin")
_GITHUB_RANK = {"read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
_GITHUB_FILTER = {"pull": "read", "triage": "triage", "push": "write"} | {
    "maintain": "maintain",
    "admin": "admin",
}
_GITLAB = {"guest": 10, "read": 20, "triage": 20, "write": 30, "maintain": 40, "admin": 50}
_GITEA = {"read": "read", "triage": "read", "write": "write", "maintain": "write"} | {
    "admin": "admin"
}
_BITBUCKET = {"read": "READ", "triage": "READ", "write": "WRITE", "maintain": "WRITE"} | {
    "admin": "ADMIN"
}


def _readers(access: dict[str, str]) -> list[tuple[str, str]]:
    """(login, level) of accounts that can read, by login."""
    return sorted((login, lvl) for login, lvl in access.items() if lvl != "guest")


# --- GitHub -----------------------------------------------------------------------------------


def add_github_routes(
    app: web.Application, host: HostState, lookup: RepoLookup, roots: Sequence[str] = ("",)
) -> None:
    """``roots``: the REST roots to answer on (``""`` and GHES's ``/api/v3``)."""

    async def collaborators(request: web.Request) -> web.Response:
        from repo_updater.emulator.github import json_response, message, paginate

        repo = lookup(request)
        if isinstance(repo, web.Response):
            return repo
        affiliation = request.query.get("affiliation", "all")
        if affiliation == "all":
            access = host.effective_access(repo)
        elif affiliation in ("direct", "outside"):
            access = dict(repo.collaborators)
            if affiliation == "outside":
                members = host.owner_members.get(repo.owner, {})
                access = {k: v for k, v in access.items() if k not in members}
        else:
            return message(422, "Validation Failed")
        wanted = request.query.get("permission")
        entries = _readers(access)
        if wanted is not None:
            floor = _GITHUB_FILTER.get(wanted)
            if floor is None:
                return message(422, "Validation Failed")
            entries = [(u, lv) for u, lv in entries if _GITHUB_RANK[lv] >= _GITHUB_RANK[floor]]
        chunk, link = paginate(request, entries)
        response = json_response([_github_user(host, u, lv) for u, lv in chunk])
        if link:
            response.headers["Link"] = link
        return response

    for root in roots:
        for repo in ("/repos/{owner}/{repo}", "/repositories/{id}"):
            app.router.add_get(root + repo + "/collaborators", collaborators)


def _github_user(host: HostState, login: str, level: str) -> dict[str, Any]:
    rank = _GITHUB_RANK[level]
    return {
        "login": login,
        "id": host.account_id(login),
        "type": "User",
        "site_admin": False,
        "permissions": {flag: rank > i for i, flag in enumerate(_GITHUB_FLAGS)},
        "role_name": level,
    }


# --- GitLab -----------------------------------------------------------------------------------


def _gitlab_page(
    request: web.Request, items: Sequence[Any], external: str | None
) -> tuple[Sequence[Any], dict[str, str]]:
    """``external``: the host's ``external_url``; its Link URLs point there (as the listing's)."""

    def page_url(page: int, per_page: int) -> str:
        return listing.page_url(
            request, external=external, keep_scheme=True, page=page, per_page=per_page
        )

    per_page = int_param(request, "per_page", 20, lo=1, hi=100)
    page = int_param(request, "page", 1, lo=1, hi=1 << 30)
    last = max(1, -(-len(items) // per_page))
    headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items))}
    headers |= {"X-Total-Pages": str(last), "X-Next-Page": "", "X-Prev-Page": ""}
    links = {"first": page_url(page=1, per_page=per_page)}
    if page < last:
        headers["X-Next-Page"] = str(page + 1)
        links["next"] = page_url(page=page + 1, per_page=per_page)
    if page > 1:
        headers["X-Prev-Page"] = str(page - 1)
        links["prev"] = page_url(page=page - 1, per_page=per_page)
    links["last"] = page_url(page=last, per_page=per_page)
    headers["Link"] = link_header(links)
    start = (page - 1) * per_page
    return items[start : start + per_page], headers


def add_gitlab_routes(
    app: web.Application, host: HostState, api: str, find: Callable[[str], EmulatedRepo | None]
) -> None:
    async def members(request: web.Request) -> web.Response:
        repo = find(request.match_info["project"])
        if repo is None:
            return web.json_response({"message": "404 Project Not Found"}, status=404)
        inherited = request.path.endswith("/all")
        access = host.effective_access(repo) if inherited else dict(repo.collaborators)
        entries = sorted(access.items())
        chunk, headers = _gitlab_page(request, entries, host.settings.external_url)
        body = [
            {"id": host.account_id(u), "username": u, "name": u.title(), "state": "active",
             "access_level": _GITLAB[lv], "expires_at": None, "web_url": f"/{u}"}
            for u, lv in chunk
        ]  # fmt: skip
        return web.json_response(body, headers=headers)

    app.router.add_get(api + "/projects/{project}/members", members)
    app.router.add_get(api + "/projects/{project}/members/all", members)


# --- Gitea ------------------------------------------------------------------------------------


def _gitea_page(
    request: web.Request, items: Sequence[Any], external: str | None
) -> tuple[Sequence[Any], dict[str, str]]:
    """``external``: the host's ``ROOT_URL``; its Link URLs start with it (as the listing's)."""

    def page_url(page: int, limit: int) -> str:
        return listing.page_url(request, external=external, page=page, limit=limit)

    limit = int_param(request, "limit", 30, lo=1, hi=50)
    page = int_param(request, "page", 1, lo=1, hi=1 << 30)
    last = max(1, -(-len(items) // limit))
    links: dict[str, str] = {}
    if page < last:
        links["next"] = page_url(page=page + 1, limit=limit)
        links["last"] = page_url(page=last, limit=limit)
    if page > 1:
        links["first"] = page_url(page=1, limit=limit)
        links["prev"] = page_url(page=page - 1, limit=limit)
    headers = {"X-Total-Count": str(len(items))}
    if links:
        headers["Link"] = link_header(links)
    start = (page - 1) * limit
    return items[start : start + limit], headers


def _gitea_teams(host: HostState, repo: EmulatedRepo) -> list[tuple[str, str]]:
    """(team name, level) of the teams with access to an org's repo: its groups, and the
    owner's members as all-repository teams (one per level; ``Owners`` for admins)."""
    teams = list(repo.group_access.items())
    levels = sorted(set(host.owner_members.get(repo.owner, {}).values()), key=LEVELS.index)
    teams += [(_owner_team(repo.owner, lv), lv) for lv in levels]
    return teams


def _owner_team(owner: str, level: str) -> str:
    return f"{owner}/Owners" if level == "admin" else f"{owner}/all-{level}"


def _team_members(host: HostState, name: str) -> list[str]:
    owner, _, team = name.rpartition("/")
    if team == "Owners" or team.startswith("all-"):
        level = "admin" if team == "Owners" else team.removeprefix("all-")
        return sorted(u for u, lv in host.owner_members.get(owner, {}).items() if lv == level)
    return sorted(host.groups.get(name, ()))


def add_gitea_routes(app: web.Application, host: HostState, api: str, lookup: RepoLookup) -> None:
    team_ids: dict[str, int] = {}
    team_names: dict[int, str] = {}

    def team_id(name: str) -> int:
        if name not in team_ids:
            team_ids[name] = len(team_ids) + 1
            team_names[team_ids[name]] = name
        return team_ids[name]

    def user(login: str) -> dict[str, Any]:
        return {"id": host.account_id(login), "login": login, "username": login}

    def not_found(request: web.Request) -> web.Response:
        body = {"message": "The target couldn't be found.", "url": str(request.url)}
        return web.json_response(body, status=404)

    async def collaborators(request: web.Request) -> web.Response:
        repo = lookup(request)
        if isinstance(repo, web.Response):
            return repo
        external = host.settings.external_url
        chunk, headers = _gitea_page(request, _readers(repo.collaborators), external)
        return web.json_response([user(u) for u, _ in chunk], headers=headers)

    async def permission(request: web.Request) -> web.Response:
        repo = lookup(request)
        if isinstance(repo, web.Response):
            return repo
        login = request.match_info["user"]
        level = host.effective_access(repo).get(login)
        mode = "owner" if login == repo.owner else _GITEA.get(level or "", "none")
        return web.json_response({"permission": mode, "role_name": mode, "user": user(login)})

    async def teams(request: web.Request) -> web.Response:
        repo = lookup(request)
        if isinstance(repo, web.Response):
            return repo
        if repo.owner in host.users:
            error = {"message": "repo is not owned by an organization", "url": str(request.url)}
            return web.json_response(error, status=405)
        body = [
            {"id": team_id(name), "name": name.rpartition("/")[2],
             "permission": "owner" if name.endswith("/Owners") else _GITEA[lv],
             "includes_all_repositories": name.startswith(f"{repo.owner}/"),
             "units_map": {"repo.code": _GITEA[lv]}}
            for name, lv in _gitea_teams(host, repo)
            if lv != "guest"
        ]  # fmt: skip
        return web.json_response(body)

    async def team_members(request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        name = team_names.get(int(raw)) if raw.isdigit() else None
        if name is None:
            return not_found(request)
        external = host.settings.external_url
        chunk, headers = _gitea_page(request, _team_members(host, name), external)
        return web.json_response([user(u) for u in chunk], headers=headers)

    async def org(request: web.Request) -> web.Response:
        name = request.match_info["org"]
        if name in host.users or not host.owner_exists(name):
            return not_found(request)
        return web.json_response({"id": 0, "name": name, "username": name, "visibility": "public"})

    async def get_user(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in host.owners and name not in host.users:
            return not_found(request)
        return web.json_response(user(name))

    repo_path = api + "/repos/{owner}/{repo}"
    app.router.add_get(repo_path + "/collaborators", collaborators)
    app.router.add_get(repo_path + "/collaborators/{user}/permission", permission)
    app.router.add_get(repo_path + "/teams", teams)
    app.router.add_get(api + "/teams/{id}/members", team_members)
    app.router.add_get(api + "/orgs/{org}", org)
    app.router.add_get(api + "/users/{name}", get_user)


# --- Bitbucket Server -------------------------------------------------------------------------


def add_bitbucket_routes(
    app: web.Application,
    host: HostState,
    api: str,
    lookup: RepoLookup,
    paged: Callable[[web.Request, Sequence[Any], Callable[[Any], dict[str, Any]]], web.Response],
) -> None:
    def bb_user(login: str) -> dict[str, Any]:
        return {"name": login, "slug": login.lower(), "id": host.account_id(login),
                "displayName": login.title(), "active": True, "type": "NORMAL"}  # fmt: skip

    def grants(access: dict[str, str], scope: str) -> list[tuple[str, str]]:
        return [(name, f"{scope}_{_BITBUCKET[lv]}") for name, lv in _readers(access)]

    async def repo_users(request: web.Request) -> web.Response:
        repo = lookup(request)
        if isinstance(repo, web.Response):
            return repo
        items = grants(repo.collaborators, "REPO")
        return paged(request, items, lambda x: {"user": bb_user(x[0]), "permission": x[1]})

    async def repo_groups(request: web.Request) -> web.Response:
        repo = lookup(request)
        if isinstance(repo, web.Response):
            return repo
        items = grants(repo.group_access, "REPO")
        return paged(request, items, lambda x: {"group": {"name": x[0]}, "permission": x[1]})

    async def project_users(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        items = grants(host.owner_members.get(key, {}), "PROJECT")
        return paged(request, items, lambda x: {"user": bb_user(x[0]), "permission": x[1]})

    async def project_groups(request: web.Request) -> web.Response:
        return paged(request, [], lambda x: {})

    async def group_members(request: web.Request) -> web.Response:
        members = sorted(host.groups.get(request.query.get("context", ""), ()))
        return paged(request, members, bb_user)

    repo_path = api + "/projects/{key}/repos/{slug}/permissions"
    app.router.add_get(repo_path + "/users", repo_users)
    app.router.add_get(repo_path + "/groups", repo_groups)
    app.router.add_get(api + "/projects/{key}/permissions/users", project_users)
    app.router.add_get(api + "/projects/{key}/permissions/groups", project_groups)
    app.router.add_get(api + "/admin/groups/more-members", group_members)
