"""Who can read a repository, per code host: ``load_permissions`` (``core.ports.PermissionSource``)
as one mixin per host, which that host's source class inherits.

- **GitHub**: ``GET /repos/{o}/{r}/collaborators?affiliation=all&per_page=100``, following
  ``Link: rel="next"``. ``affiliation=all`` lists outside collaborators, org members with access
  through teams or the base permission, and owners, each with ``permissions`` flags and its
  ``role_name`` (docs: "List repository collaborators"). One request per 100 accounts.
- **GitLab**: ``GET /projects/{id}/members/all?per_page=100`` (``Link`` or ``X-Next-Page``):
  direct, inherited and invited-group members, each once with its highest ``access_level``
  (docs: "Group and project members API"). Guests and below cannot read a private project's
  code and blocked users cannot sign in: neither is a reader.
- **Gitea**: ``GET /repos/{o}/{r}/collaborators`` (users only, no level), then each one's
  effective level with ``GET .../collaborators/{user}/permission``; for an org's repo
  ``GET .../teams`` (the Owners team and every all-repositories team included) and
  ``GET /teams/{id}/members``; a user's repo adds its owner (admin). ``routers/api/v1/repo``
  ``collaborators.go`` / ``teams.go``.
- **Bitbucket Server**: the repository's ``permissions/users`` and ``permissions/groups``, the
  project's ``permissions/users`` and ``permissions/groups`` (a project grant implies the same on
  its repositories) and each group's members
  (``GET /admin/groups/more-members?context={group}``), all paged with ``start``/``limit``
  until ``isLastPage`` (Bitbucket Data Center REST API).

What several repositories share (a Bitbucket project's grants, a group's or a team's members,
whether a Gitea owner is an org) is cached for ``PERMISSION_CACHE_TTL`` seconds, so a refresh
of many repos does not ask for them again and again; the cache holds one entry per project,
group or team, never one per repository.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from repo_updater.core.errors import HostError, NotFound
from repo_updater.core.permissions import (
    Access,
    AccountPermission,
    RepoRef,
    bitbucket_access,
    gitea_access,
    github_access,
    gitlab_access,
)
from repo_updater.sources.common import as_dict, as_list, gather_all
from repo_updater.sources.http import parse_next_link, rebase_link
from repo_updater.sources.rest import RestSource

PERMISSION_CACHE_TTL = 60.0  # seconds
KIND = "load_permissions"
T = TypeVar("T")


def _path(full_name: str) -> str:
    owner, _, name = full_name.rpartition("/")
    return f"{quote(owner, safe='/')}/{quote(name, safe='')}"


class _PermissionPlumbing(RestSource):
    """Paging and a small time-limited cache, shared by the host mixins below."""

    async def _cached(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        cache: dict[str, tuple[float, Any]] = self.__dict__.setdefault("_permission_cache", {})
        hit = cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            value: T = hit[1]
            return value
        value = await load()
        cache[key] = (now + PERMISSION_CACHE_TTL, value)
        if len(cache) > 10_000:  # entries outlive their use: drop the expired ones
            for stale in [k for k, (until, _) in cache.items() if until <= now]:
                del cache[stale]
        return value

    def _follow(self, link: str | None) -> str | None:
        """GitLab's and Gitea's links start with the host's own idea of its URL (``gitlab.host``,
        ``ROOT_URL``), maybe not the one we reach it at: re-based on the configured URL, as the
        listings do (``http.rebase_link``). GitHub's point at the API root we called."""
        if link is None or not self.api_suffix:
            return link
        return rebase_link(link, self.api_suffix)

    async def _link_pages(
        self, url: str, params: dict[str, str], *, page_size: int
    ) -> AsyncIterator[list[Any]]:
        """A ``Link``-paged list (GitHub, GitLab, Gitea): a ``Link`` header without
        ``rel="next"`` ends it; without a ``Link`` (a proxy may strip it), GitLab's
        ``X-Next-Page`` or Gitea's ``X-Total-Count`` say whether there is a next page."""
        next_url: str | None = url
        query: dict[str, str] | None = params
        page, seen = 1, set()
        while next_url is not None:
            key = f"{next_url}?{query}"
            if key in seen:  # a host that points back would keep us here forever
                raise HostError(f"GET {url}: the listing loops back to a page")
            seen.add(key)
            data, response = await self._get(next_url, kind=KIND, params=query)
            if not isinstance(data, list):
                raise HostError(f"GET {url}: expected a list")
            yield data
            page += 1
            if response.headers.get("link", "").strip():  # the Link header says it all
                next_url, query = self._follow(parse_next_link(response.headers)), None
                continue
            next_page = response.headers.get("x-next-page", "").strip()
            total = response.headers.get("x-total-count", "").strip()
            if next_page.isdigit():
                page = int(next_page)
            elif not (total.isdigit() and (page - 1) * page_size < int(total) and data):
                return
            next_url, query = url, {**params, "page": str(page)}


class GitHubPermissions(_PermissionPlumbing):
    async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]:
        url = f"/repos/{_path(repo.name)}/collaborators"
        params = {"affiliation": "all", "per_page": "100"}
        out: list[AccountPermission] = []
        async for page in self._link_pages(url, params, page_size=100):
            out += [g for g in map(_github_grant, page) if g is not None]
        return out


def _github_grant(raw: Any) -> AccountPermission | None:
    user = as_dict(raw)
    login = user.get("login")
    if not isinstance(login, str) or not login:
        raise HostError("malformed GitHub collaborator: no login")
    mapped = github_access(as_dict(user.get("permissions")))
    if mapped is None:
        return None
    role = user.get("role_name")
    permission = role if isinstance(role, str) and role else mapped[0]
    return AccountPermission(login, permission, mapped[1], str(user.get("id") or ""))


class GitLabPermissions(_PermissionPlumbing):
    async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]:
        # By id: a renamed or moved project keeps it.
        url = f"/projects/{quote(repo.external_id, safe='')}/members/all"
        out: list[AccountPermission] = []
        async for page in self._link_pages(url, {"per_page": "100"}, page_size=100):
            out += [g for g in map(_gitlab_grant, page) if g is not None]
        return out


def _gitlab_grant(raw: Any) -> AccountPermission | None:
    member = as_dict(raw)
    login, level = member.get("username"), member.get("access_level")
    if not isinstance(login, str) or not login or not isinstance(level, int):
        raise HostError("malformed GitLab member: no username or access_level")
    mapped = gitlab_access(level)
    if mapped is None or member.get("state", "active") != "active":
        return None
    return AccountPermission(login, mapped[0], mapped[1], str(member.get("id") or ""))


class GiteaPermissions(_PermissionPlumbing):
    async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]:
        base = f"/repos/{_path(repo.name)}"
        owner = repo.name.rpartition("/")[0]
        users: list[dict[str, Any]] = []
        async for page in self._link_pages(f"{base}/collaborators", {"limit": "50"}, page_size=50):
            users += [as_dict(u) for u in page]
        out = await gather_all(self._gitea_collaborator(base, u) for u in users)
        grants = [g for g in out if g is not None]
        if await self._cached(f"org:{owner.lower()}", lambda: self._gitea_is_org(owner)):
            data, _ = await self._get(f"{base}/teams", kind=KIND)
            teams = await gather_all(self._gitea_team(as_dict(t)) for t in as_list(data))
            grants += [g for team in teams for g in team]
        else:  # a user's repository: its owner can do anything with it
            grants.append(await self._cached(f"user:{owner.lower()}", lambda: self._owner(owner)))
        return grants

    async def _gitea_is_org(self, owner: str) -> bool:
        try:
            await self._get(f"/orgs/{quote(owner, safe='')}", kind=KIND)
        except NotFound:
            return False
        return True

    async def _owner(self, login: str) -> AccountPermission:
        data, _ = await self._get(f"/users/{quote(login, safe='')}", kind=KIND)
        user_id = str(as_dict(data).get("id") or "")
        return AccountPermission(login, "owner", Access.ADMIN, user_id)

    async def _gitea_collaborator(
        self, base: str, user: dict[str, Any]
    ) -> AccountPermission | None:
        login = user.get("login")
        if not isinstance(login, str) or not login:
            raise HostError("malformed Gitea collaborator: no login")
        url = f"{base}/collaborators/{quote(login, safe='')}/permission"
        data, _ = await self._get(url, kind=KIND)
        mode = as_dict(data).get("permission")
        access = gitea_access(mode) if isinstance(mode, str) else None
        if access is None:
            return None
        assert isinstance(mode, str)
        return AccountPermission(login, mode, access, str(user.get("id") or ""))

    async def _gitea_team(self, team: dict[str, Any]) -> list[AccountPermission]:
        team_id, mode = team.get("id"), team.get("permission")
        if not isinstance(team_id, int) or not isinstance(mode, str):
            raise HostError("malformed Gitea team: no id or permission")
        if mode == "none":  # per-unit permissions (Gitea 1.17+): what the code unit allows
            mode = str(as_dict(team.get("units_map")).get("repo.code", "none"))
        access = gitea_access(mode)
        if access is None:
            return []
        members = await self._cached(f"team:{team_id}", lambda: self._team_members(team_id))
        return [AccountPermission(login, mode, access, uid) for login, uid in members]

    async def _team_members(self, team_id: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        url = f"/teams/{team_id}/members"
        async for page in self._link_pages(url, {"limit": "50"}, page_size=50):
            for raw in page:
                user = as_dict(raw)
                if isinstance(user.get("login"), str):
                    out.append((user["login"], str(user.get("id") or "")))
        return out


class BitbucketPermissions(_PermissionPlumbing):
    async def load_permissions(self, repo: RepoRef) -> list[AccountPermission]:
        key, _, slug = repo.name.partition("/")
        project = f"/projects/{quote(key, safe='')}"
        repo_url = f"{project}/repos/{quote(slug, safe='')}/permissions"
        users, groups = await gather_all(
            [self._bb_values(f"{repo_url}/users"), self._bb_values(f"{repo_url}/groups")]
        )
        p_users, p_groups = await self._cached(
            f"project:{key}",
            lambda: gather_all(
                [
                    self._bb_values(f"{project}/permissions/users"),
                    self._bb_values(f"{project}/permissions/groups"),
                ]
            ),
        )
        grants = [g for g in map(_bitbucket_user_grant, users + p_users) if g is not None]
        for raw in groups + p_groups:
            entry = as_dict(raw)
            name = as_dict(entry.get("group")).get("name")
            permission = entry.get("permission")
            if not isinstance(name, str) or not isinstance(permission, str):
                raise HostError("malformed Bitbucket group permission")
            access = bitbucket_access(permission)
            if access is None:
                continue
            members = await self._group_members(name)
            grants += [AccountPermission(login, permission, access, uid) for login, uid in members]
        return grants

    async def _bb_values(self, url: str, **params: str) -> list[Any]:
        """Every value of a Bitbucket paged API (``start``/``limit`` until ``isLastPage``)."""
        out: list[Any] = []
        start = 0
        while True:
            query = {**params, "start": str(start), "limit": "1000"}
            data, _ = await self._get(url, kind=KIND, params=query)
            page = as_dict(data)
            values = page.get("values")
            if not isinstance(values, list) or not isinstance(page.get("isLastPage"), bool):
                raise HostError(f"GET {url}: malformed page (no values/isLastPage)")
            out += values
            if page["isLastPage"]:
                return out
            next_start = page.get("nextPageStart")
            if not isinstance(next_start, int) or next_start <= start:
                raise HostError(f"GET {url}: page is not the last but has no usable nextPageStart")
            start = next_start

    async def _group_members(self, group: str) -> list[tuple[str, str]]:
        return await self._cached(f"group:{group}", lambda: self._load_group_members(group))

    async def _load_group_members(self, group: str) -> list[tuple[str, str]]:
        values = await self._bb_values("/admin/groups/more-members", context=group)
        out = []
        for raw in values:
            user = as_dict(raw)
            if isinstance(user.get("name"), str) and user.get("active", True):
                out.append((user["name"], str(user.get("id") or "")))
        return out


def _bitbucket_user_grant(raw: Any) -> AccountPermission | None:
    entry = as_dict(raw)
    user = as_dict(entry.get("user"))
    login, permission = user.get("name"), entry.get("permission")
    if not isinstance(login, str) or not login or not isinstance(permission, str):
        raise HostError("malformed Bitbucket user permission")
    access = bitbucket_access(permission)
    if access is None or user.get("active") is False:
        return None
    return AccountPermission(login, permission, access, str(user.get("id") or ""))
