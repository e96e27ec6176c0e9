"""GitHub REST API emulator (a GitHub-shaped subset), mounted under ``/github``.

Routes (relative to the sub-app, like https://api.github.com):

- ``GET /orgs/{org}/repos``, ``GET /users/{user}/repos``: ``per_page`` (max 100, default 30)
  and ``page``, ``Link`` header with ``rel="prev"/"next"/"last"/"first"``; ``sort``
  (``created``, ``updated``, ``pushed``, ``full_name``) and ``direction`` (``asc``, ``desc``)
  with GitHub's defaults: orgs ``created``, users ``full_name``; ``desc`` except for
  ``full_name``. So an org lists newest first unless asked otherwise (another value: 422).
  An org that exists but holds no repos lists ``[]``; an unknown owner is 404. Like GitHub,
  ``/users/{user}/repos`` lists public repositories only.
- ``GET /user`` (the token's user, ``settings.viewer``; 401 without one) and
  ``GET /user/repos`` (``affiliation``, ``visibility``; ``type`` with either is 422): the
  viewer's own repositories, private ones included, and (``organization_member``) those of
  every org.
- ``GET /repos/{owner}/{repo}``
- ``GET /repos/{owner}/{repo}/pulls`` (``state``, ``head``, ``per_page``, ``page``)
- ``GET /repos/{owner}/{repo}/pulls/{number}``
- the same under ``/repositories/{id}`` (where renamed repositories redirect to)
- ``POST /graphql`` (see ``github_graphql``)
- the write routes (pulls, merges, comments, GraphQL mutations): see ``github_writes``.

Every route is also served GitHub Enterprise Server style: REST under ``/api/v3`` and GraphQL
at ``/api/graphql`` (``{emulator}/github/api/v3`` is then the base URL).

Writes to an archived repository answer 403 "Repository was archived so is read-only.".
A request for a renamed repository's old name answers ``301 Moved Permanently`` (GET/HEAD) or
``307 Temporary Redirect`` (writes) with ``Location: {api}/repositories/{id}{rest of path}``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.emulator import permissions
from repo_updater.emulator.faults import fault_middleware, request_token
from repo_updater.emulator.github_graphql import GraphQLEndpoint, github_time
from repo_updater.emulator.state import (
    EmulatedPull,
    EmulatedRepo,
    EmulatorState,
    HostState,
)

PREFIX = "/github"
GHES_API = "/api/v3"  # GitHub Enterprise Server's REST root
ARCHIVED_MESSAGE = "Repository was archived so is read-only."
_DOCS = "https://docs.github.com/rest"


def build_app(state: EmulatorState) -> web.Application:
    host = state.host(HostKind.GITHUB)
    app = web.Application(middlewares=[fault_middleware(host, "github")])
    api = _GitHubRest(host)
    graphql = GraphQLEndpoint(host)
    for root in ("", GHES_API):
        app.router.add_get(root + "/orgs/{owner}/repos", api.org_repos)
        app.router.add_get(root + "/users/{owner}/repos", api.user_repos)
        app.router.add_get(root + "/user", api.viewer)
        app.router.add_get(root + "/user/repos", api.viewer_repos)
        for repo in ("/repos/{owner}/{repo}", "/repositories/{id}"):
            app.router.add_get(root + repo, api.get_repo)
            app.router.add_get(root + repo + "/pulls", api.list_pulls)
            app.router.add_get(root + repo + "/pulls/{number}", api.get_pull)
    permissions.add_github_routes(app, host, api._repo, roots=("", GHES_API))
    from repo_updater.emulator import github_writes  # it builds on this module's helpers

    # The write routes (under both REST roots), and POST /graphql and /api/graphql (GHES).
    github_writes.add_routes(app, api, graphql, rest_roots=("", GHES_API))
    from repo_updater.emulator import github_git

    github_git.add_routes(app, api, ("", GHES_API))  # files, trees, commits, refs
    return app


def node_id(kind: str, ident: int) -> str:
    return base64.b64encode(f"{kind}{ident}".encode()).decode()


def web_base(request: web.Request) -> str:
    """Where the host's web pages are (``html_url``)."""
    return f"{request.scheme}://{request.host}{PREFIX}"


def api_base(request: web.Request) -> str:
    """The REST root the request came in on (``/api/v3`` on the GHES-style routes)."""
    ghes = request.path.startswith(PREFIX + GHES_API + "/")
    return web_base(request) + (GHES_API if ghes else "")


def json_response(body: Any, *, status: int = 200) -> web.Response:
    text = json.dumps(body, separators=(",", ":"))
    return web.Response(text=text, status=status, content_type="application/json")


def message(status: int, text: str, **extra: Any) -> web.Response:
    return json_response(
        {"message": text, "documentation_url": _DOCS, "status": str(status), **extra},
        status=status,
    )


def not_found() -> web.Response:
    return message(404, "Not Found")


def repo_json(repo: EmulatedRepo, base: str, *, user: bool = False) -> dict[str, Any]:
    """``base``: the REST root; web URLs drop a GHES ``/api/v3``."""
    full = repo.full_name
    html = f"{base.removesuffix(GHES_API)}/{full}"
    owner_type = "User" if user else "Organization"
    return {
        "id": repo.id,
        "node_id": node_id("010:Repository", repo.id),
        "name": repo.name,
        "full_name": full,
        "private": repo.private,
        "owner": {"login": repo.owner, "type": owner_type},
        "html_url": html,
        "description": repo.description or None,
        "fork": repo.fork,
        "url": f"{base}/repos/{full}",
        "clone_url": f"{html}.git",
        "default_branch": repo.default_branch,
        "archived": repo.archived,
        "disabled": False,
        "visibility": "private" if repo.private else "public",
        "created_at": github_time(repo.created_at),
        "updated_at": github_time(repo.updated_at),
        "pushed_at": github_time(repo.updated_at),
    }


def pull_json(
    repo: EmulatedRepo, pull: EmulatedPull, base: str, *, simple: bool = False
) -> dict[str, Any]:
    """The ``pull-request`` schema; ``simple``: ``pull-request-simple`` (what ``GET /pulls``
    lists), which has no ``merged``, ``additions``, ``deletions``, ``changed_files``."""
    closed = pull.state in (HostPullState.CLOSED, HostPullState.MERGED)
    ident = repo.id * 1_000_000 + pull.number
    data: dict[str, Any] = {
        "id": ident,
        "node_id": node_id("011:PullRequest", ident),
        "number": pull.number,
        "url": f"{base}/repos/{repo.full_name}/pulls/{pull.number}",
        "html_url": f"{base.removesuffix(GHES_API)}/{repo.full_name}/pull/{pull.number}",
        "state": "closed" if closed else "open",
        "draft": pull.state is HostPullState.DRAFT,
        "merged": pull.state is HostPullState.MERGED,
        "title": pull.title,
        "body": pull.body,
        "user": {"login": pull.author},
        "head": {"ref": pull.head_ref, "label": f"{repo.owner}:{pull.head_ref}"},
        "base": {"ref": pull.base_ref, "label": f"{repo.owner}:{pull.base_ref}"},
        "created_at": github_time(pull.created_at),
        "updated_at": github_time(pull.updated_at),
        "closed_at": github_time(pull.closed_at),
        "merged_at": github_time(pull.merged_at),
    }
    if not simple:
        data["additions"], data["deletions"] = pull.additions, pull.deletions
        data["changed_files"] = 1 if pull.additions or pull.deletions else 0
    else:
        del data["merged"]
    return data


def _int_param(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        return default


def paginate(request: web.Request, items: Sequence[Any]) -> tuple[Sequence[Any], str | None]:
    """Slice one page of ``items`` and build GitHub's ``Link`` header for it."""
    per_page = min(max(_int_param(request, "per_page", 30), 1), 100)
    page = max(_int_param(request, "page", 1), 1)
    last = max(1, -(-len(items) // per_page))
    start = (page - 1) * per_page
    chunk = items[start : start + per_page]
    url = request.url

    def link(n: int, rel: str) -> str:
        return f'<{url.update_query(page=n)}>; rel="{rel}"'

    links: list[str] = []
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
        links.append(link(last, "last"))
    if page > 1:
        links.append(link(1, "first"))
    return chunk, ", ".join(links) or None


class _GitHubRest:
    def __init__(self, host: HostState) -> None:
        self.host = host
        # Serialised repo JSON, reused while the fields it depends on are unchanged: listing
        # 100,000 repos again and again must not rebuild and re-encode every one each time.
        self._encoded: dict[int, tuple[tuple[object, ...], str]] = {}
        # Listings in creation order, by (id of the id-ordered listing, its length, direction).
        self._ordered: dict[
            tuple[int, int, str], tuple[Sequence[EmulatedRepo], Sequence[EmulatedRepo]]
        ] = {}

    def _encode(self, repo: EmulatedRepo, base: str) -> str:
        user = repo.owner in self.host.users
        key = (
            base,
            repo.owner,
            repo.name,
            repo.archived,
            repo.fork,
            repo.private,
            repo.description,
            repo.default_branch,
            repo.updated_at,
            user,
        )
        cached = self._encoded.get(repo.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        text = json.dumps(repo_json(repo, base, user=user), separators=(",", ":"))
        self._encoded[repo.id] = (key, text)
        return text

    def _repo(self, request: web.Request) -> EmulatedRepo | web.Response:
        """The repo the path names, or the answer to send instead (404, or a redirect for a
        renamed repo's old name)."""
        match = request.match_info
        if "id" in match:
            repo = self.host.repos.get(int(match["id"])) if match["id"].isdigit() else None
            return not_found() if repo is None else repo
        full = f"{match['owner']}/{match['repo']}"
        repo = self.host.find_repo(full)
        if repo is not None:
            return repo
        moved = self.host.redirected_repo(full)
        return not_found() if moved is None else _moved(request, full, moved)

    def _pull(self, request: web.Request) -> tuple[EmulatedRepo, EmulatedPull] | web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        try:
            number = int(request.match_info["number"])
        except ValueError:
            return not_found()
        pull = repo.pulls.get(number)
        return not_found() if pull is None else (repo, pull)

    def _sorted(
        self, request: web.Request, repos: Sequence[EmulatedRepo], default_sort: str
    ) -> Sequence[EmulatedRepo] | web.Response:
        """``repos`` (in id order) in the order ``sort`` and ``direction`` ask for."""
        sort = request.query.get("sort", default_sort)
        direction = request.query.get("direction", "asc" if sort == "full_name" else "desc")
        if sort not in _SORT_KEYS or direction not in ("asc", "desc"):
            return _validation_failed(f"invalid sort {sort!r} or direction {direction!r}")
        if sort == "created":
            # Cached per listing (a 100k-repo listing is asked for 1,000 times, page by page).
            key = (id(repos), len(repos), direction)
            cached = self._ordered.get(key)
            if cached is not None and cached[0] is repos:
                return cached[1]
        ordered: Sequence[EmulatedRepo] = sorted(
            repos, key=_SORT_KEYS[sort], reverse=direction == "desc"
        )
        if sort == "created":
            if len(self._ordered) > 64:
                self._ordered.clear()
            self._ordered[key] = (repos, ordered)
        return ordered

    def _list(
        self, request: web.Request, repos: Sequence[EmulatedRepo], default_sort: str
    ) -> web.Response:
        ordered = self._sorted(request, repos, default_sort)
        if isinstance(ordered, web.Response):
            return ordered
        chunk, link = paginate(request, ordered)
        base = api_base(request)
        text = "[" + ",".join([self._encode(r, base) for r in chunk]) + "]"
        response = web.Response(text=text, content_type="application/json")
        if link:
            response.headers["Link"] = link
        return response

    async def org_repos(self, request: web.Request) -> web.Response:
        owner = request.match_info["owner"]
        if owner in self.host.users or not self.host.owner_exists(owner):
            return not_found()
        return self._list(request, self.host.owner_repos(owner), "created")

    async def user_repos(self, request: web.Request) -> web.Response:
        owner = request.match_info["owner"]
        if not self.host.owner_exists(owner):
            return not_found()
        public = [r for r in self.host.owner_repos(owner) if not r.private]
        return self._list(request, public, "full_name")

    async def viewer(self, request: web.Request) -> web.Response:
        login = self.host.settings.viewer
        if login is None or request_token(request) is None:
            return message(401, "Requires authentication")
        return json_response({"login": login, "id": 1, "type": "User", "site_admin": False})

    async def viewer_repos(self, request: web.Request) -> web.Response:
        login = self.host.settings.viewer
        if login is None or request_token(request) is None:
            return message(401, "Requires authentication")
        query = request.query
        if "type" in query and ("visibility" in query or "affiliation" in query):
            return _validation_failed("type cannot be used with visibility or affiliation")
        default = "owner,collaborator,organization_member"
        affiliation = set(query.get("affiliation", default).split(","))
        visibility = query.get("visibility", "all")
        repos = [
            r
            for r in sorted(self.host.repos.values(), key=lambda r: r.id)
            if ("owner" in affiliation and r.owner.lower() == login.lower())
            or ("organization_member" in affiliation and r.owner not in self.host.users)
        ]
        if visibility in ("public", "private"):
            repos = [r for r in repos if r.private == (visibility == "private")]
        return self._list(request, repos, "full_name")

    async def get_repo(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        user = repo.owner in self.host.users
        return json_response(repo_json(repo, api_base(request), user=user))

    async def list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        wanted = request.query.get("state", "open")
        head = request.query.get("head", "")
        head_ref = head.partition(":")[2] if ":" in head else head
        pulls = []
        for pull in sorted(repo.pulls.values(), key=lambda p: -p.number):
            is_open = pull.state in (HostPullState.OPEN, HostPullState.DRAFT)
            if (wanted == "open" and not is_open) or (wanted == "closed" and is_open):
                continue
            if head_ref and pull.head_ref != head_ref:
                continue
            pulls.append(pull)
        chunk, link = paginate(request, pulls)
        base = api_base(request)
        response = json_response([pull_json(repo, p, base, simple=True) for p in chunk])
        if link:
            response.headers["Link"] = link
        return response

    async def get_pull(self, request: web.Request) -> web.Response:
        found = self._pull(request)
        if isinstance(found, web.Response):
            return found
        return json_response(pull_json(*found, api_base(request)))


_SORT_KEYS: dict[str, Any] = {
    "created": lambda r: (r.created_at, r.id),
    "updated": lambda r: (r.updated_at, r.id),
    "pushed": lambda r: (r.updated_at, r.id),
    "full_name": lambda r: (r.full_name.lower(), r.id),
}


def _moved(request: web.Request, old_full: str, repo: EmulatedRepo) -> web.Response:
    """GitHub's answer for a renamed repository's old name: a redirect to it by id."""
    marker = f"/repos/{old_full}"
    rest = request.path.partition(marker)[2]
    location = f"{api_base(request)}/repositories/{repo.id}{rest}"
    if request.query_string:
        location += f"?{request.query_string}"
    read = request.method in ("GET", "HEAD")
    status, text = (301, "Moved Permanently") if read else (307, "Temporary Redirect")
    response = message(status, text, url=location)
    response.headers["Location"] = location
    return response


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _validation_failed(detail: str) -> web.Response:
    return message(
        422,
        "Validation Failed",
        errors=[{"resource": "PullRequest", "code": "custom", "message": detail}],
    )
