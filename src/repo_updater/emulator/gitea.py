"""Gitea API v1 emulator routes (mounted under ``/gitea``; API under ``/api/v1``).

Modelled: org and user repo listings (``page``/``limit``, limit capped at 50 like Gitea's
``MAX_RESPONSE_ITEMS``, ``Link`` and ``X-Total-Count`` headers; ``Link`` URLs start with
``settings.external_url`` when set, as Gitea's start with its ``ROOT_URL``), single repos, pull
requests (paged listing without ``additions``/``deletions``, which Gitea leaves out of lists;
GET, GET by base and head branch), PR reviews (paged: ``page``, ``limit`` default 30,
``X-Total-Count``, no ``Link``) and the combined commit status of a PR head (an empty
``CombinedStatus`` with ``state: ""`` when there are no statuses). The write routes (create,
edit, merge, comments) are in ``gitea_writes``.

Every owner that has (had) repos is an org, except the names in ``HostState.users``: those are
users, which only ``/users/{name}/repos`` lists (``/orgs/{name}/repos`` answers 404 for them).
An org whose repos are all gone lists ``[]``. A renamed repo's old name answers ``307`` to the
same path under the new name, like Gitea's ``RedirectToRepo``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator import permissions
from repo_updater.emulator.faults import fault_middleware
from repo_updater.emulator.listing import (
    int_param,
    iso,
    link_header,
    page_url,
)
from repo_updater.emulator.state import (
    EmulatedPull,
    EmulatedRepo,
    EmulatedReview,
    EmulatorState,
    HostState,
)

API = "/api/v1"
MAX_LIMIT = 50
DEFAULT_LIMIT = 30
WIP_PREFIXES = ("wip:", "[wip]")

_REVIEW = {
    ReviewState.APPROVED: "APPROVED",
    ReviewState.CHANGES_REQUESTED: "REQUEST_CHANGES",
    ReviewState.COMMENTED: "COMMENT",
    ReviewState.PENDING: "PENDING",
    ReviewState.DISMISSED: "APPROVED",  # Gitea keeps the state and sets ``dismissed``
}
T = TypeVar("T")

_STATUS = {
    CheckState.PENDING: "pending",
    CheckState.PASSED: "success",
    CheckState.FAILED: "failure",
}


def _error(request: web.Request, status: int, message: str) -> web.Response:
    return web.json_response({"message": message, "url": str(request.url)}, status=status)


def _sha(repo: EmulatedRepo, pull: EmulatedPull) -> str:
    return f"{repo.id:08x}{pull.number:032x}"


class _Gitea:
    def __init__(self, host: HostState) -> None:
        self.host = host

    @staticmethod
    def root(request: web.Request) -> str:
        raw = request.raw_path
        return str(request.url.origin()) + raw[: raw.index(API)]

    def repo_json(self, repo: EmulatedRepo, root: str) -> dict[str, Any]:
        full = repo.full_name
        return {
            "id": repo.id,
            "owner": {"id": 0, "login": repo.owner},
            "name": repo.name,
            "full_name": full,
            "description": repo.description,
            "empty": False,
            "private": repo.private,
            "fork": repo.fork,
            "parent": None,
            "mirror": False,
            "archived": repo.archived,
            "internal": False,
            "html_url": f"{root}/{full}",
            "clone_url": f"{root}/{full}.git",
            "default_branch": repo.default_branch,
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.updated_at),
        }

    def pull_json(
        self, repo: EmulatedRepo, pull: EmulatedPull, root: str, *, listed: bool = False
    ) -> dict[str, Any]:
        """A ``PullRequest``; ``listed``: as ``GET /pulls`` shows it, without the diff stats
        (``ToAPIPullRequests``: "Do not provide ChangeFiles/Additions/Deletions for the PR
        list")."""
        closed = pull.state in (HostPullState.CLOSED, HostPullState.MERGED)
        merged = pull.state is HostPullState.MERGED
        full = repo.full_name
        data: dict[str, Any] = {
            "id": repo.id * 100_000 + pull.number,
            "url": f"{root}{API}/repos/{full}/pulls/{pull.number}",
            "number": pull.number,
            "user": {"login": pull.author},
            "title": pull.title,
            "body": pull.body,
            "state": "closed" if closed else "open",
            "draft": pull.state is HostPullState.DRAFT,
            "html_url": f"{root}/{full}/pulls/{pull.number}",
            "mergeable": not closed,
            "merged": merged,
            "merged_at": iso(pull.merged_at),
            "closed_at": iso(pull.closed_at),
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at),
            "additions": pull.additions,
            "deletions": pull.deletions,
            "changed_files": 1 if pull.additions or pull.deletions else 0,
            "head": {"label": pull.head_ref, "ref": pull.head_ref, "sha": _sha(repo, pull)},
            "base": {"label": pull.base_ref, "ref": pull.base_ref, "repo_id": repo.id},
            "comments": 0,
            "review_comments": len(pull.reviews),
        }
        if listed:
            for key in ("additions", "deletions", "changed_files"):
                data.pop(key, None)
        return data

    def page(
        self,
        request: web.Request,
        items: Sequence[T],
        render: Callable[[T], dict[str, Any]],
        *,
        links: bool = True,
    ) -> web.Response:
        cap = self.host.settings.max_page_size or MAX_LIMIT  # MAX_RESPONSE_ITEMS
        limit = int_param(request, "limit", min(DEFAULT_LIMIT, cap), lo=1, hi=cap)
        page = int_param(request, "page", 1, lo=1, hi=1 << 30)
        total = len(items)
        last = max(1, -(-total // limit))
        start = (page - 1) * limit
        body = [render(x) for x in items[start : start + limit]]
        external = self.host.settings.external_url

        def link(n: int) -> str:
            return page_url(request, external=external, page=n, limit=limit)

        rels: dict[str, str] = {}
        if page < last:
            rels["next"], rels["last"] = link(page + 1), link(last)
        if page > 1:
            rels["first"], rels["prev"] = link(1), link(page - 1)
        headers = {"X-Total-Count": str(total)}
        if rels and links:
            headers["Link"] = link_header(rels)
        return web.json_response(body, headers=headers)

    def owner_repos(self, request: web.Request, repos: Sequence[EmulatedRepo]) -> web.Response:
        root = self.root(request)
        return self.page(request, repos, lambda r: self.repo_json(r, root))

    async def org_repos(self, request: web.Request) -> web.Response:
        org = request.match_info["org"]
        if org in self.host.users or not self.host.owner_exists(org):
            return _error(request, 404, "The target couldn't be found.")
        return self.owner_repos(request, self.host.owner_repos(org))

    async def user_repos(self, request: web.Request) -> web.Response:
        user = request.match_info["user"]
        if not self.host.owner_exists(user):
            return _error(request, 404, "The target couldn't be found.")
        return self.owner_repos(request, self.host.owner_repos(user))

    def _repo(self, request: web.Request) -> EmulatedRepo | web.Response:
        owner, name = request.match_info["owner"], request.match_info["repo"]
        repo = self.host.find_repo(f"{owner}/{name}")
        if repo is not None:
            return repo
        moved = self.host.redirected_repo(f"{owner}/{name}")
        if moved is None:
            return _error(request, 404, "The target couldn't be found.")
        # Gitea's ``RedirectToRepo``: 307 to the same path under the repo's current name.
        rest = request.path.partition(f"/repos/{owner}/{name}")[2]
        location = (
            f"{self.root(request)}{API}/repos/{quote(moved.owner, safe='')}/"
            f"{quote(moved.name, safe='')}{quote(rest)}"
        )
        if request.query_string:
            location += f"?{request.query_string}"
        return web.Response(status=307, headers={"Location": location})

    def _pull(self, request: web.Request) -> tuple[EmulatedRepo, EmulatedPull] | web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        index = request.match_info["index"]
        pull = repo.pulls.get(int(index)) if index.isdigit() else None
        return (
            _error(request, 404, "The target couldn't be found.") if pull is None else (repo, pull)
        )

    async def get_repo(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        return web.json_response(self.repo_json(repo, self.root(request)))

    async def get_repo_by_id(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        repo = self.host.repos.get(int(rid)) if rid.isdigit() else None
        if repo is None:
            return _error(request, 404, "The target couldn't be found.")
        return web.json_response(self.repo_json(repo, self.root(request)))

    async def list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        state = request.query.get("state", "open")
        pulls = sorted(repo.pulls.values(), key=lambda p: p.number, reverse=True)
        if state in ("open", "closed"):
            done = (HostPullState.CLOSED, HostPullState.MERGED)
            pulls = [p for p in pulls if (p.state in done) == (state == "closed")]
        root = self.root(request)
        return self.page(request, pulls, lambda p: self.pull_json(repo, p, root, listed=True))

    async def get_pull(self, request: web.Request) -> web.Response:
        found = self._pull(request)
        if isinstance(found, web.Response):
            return found
        return web.json_response(self.pull_json(*found, self.root(request)))

    async def pull_by_branches(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        base, head = request.match_info["base"], request.match_info["head"]
        for pull in sorted(repo.pulls.values(), key=lambda p: p.number, reverse=True):
            if pull.base_ref == base and pull.head_ref == head:
                return web.json_response(self.pull_json(repo, pull, self.root(request)))
        return _error(request, 404, "The target couldn't be found.")

    async def reviews(self, request: web.Request) -> web.Response:
        found = self._pull(request)
        if isinstance(found, web.Response):
            return found
        numbered = list(enumerate(found[1].reviews, start=1))

        def render(item: tuple[int, EmulatedReview]) -> dict[str, Any]:
            ident, r = item
            return {
                "id": ident,
                "user": {"login": r.author},
                "state": _REVIEW[r.state],
                "dismissed": r.state is ReviewState.DISMISSED,
                "submitted_at": iso(r.at),
            }

        return self.page(request, numbered, render, links=False)

    async def commit_status(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        ref = request.match_info["ref"]
        try:
            pull = repo.pulls.get(int(ref[8:], 16)) if len(ref) == 40 else None
        except ValueError:
            pull = None
        status = "" if pull is None else _STATUS.get(pull.check_state, "")
        if not status:  # Gitea: no statuses -> an empty CombinedStatus{}
            empty = {"state": "", "sha": "", "total_count": 0, "statuses": None,
                     "repository": None, "commit_url": "", "url": ""}  # fmt: skip
            return web.json_response(empty)
        root = self.root(request)
        api = f"{root}{API}/repos/{repo.full_name}"
        statuses = [{"id": 1, "context": "ci", "status": status}]
        return web.json_response(
            {
                "state": status,
                "sha": ref,
                "total_count": len(statuses),
                "statuses": statuses,
                "repository": self.repo_json(repo, root),
                "commit_url": f"{api}/commits/{ref}",
                "url": f"{api}/commits/{ref}/status",
            }
        )


def build_app(state: EmulatorState) -> web.Application:
    host = state.host(HostKind.GITEA)
    gt = _Gitea(host)
    app = web.Application(middlewares=[fault_middleware(host, "gitea")])
    repo = API + "/repos/{owner}/{repo}"
    app.router.add_get(API + "/orgs/{org}/repos", gt.org_repos)
    app.router.add_get(API + "/users/{user}/repos", gt.user_repos)
    app.router.add_get(repo, gt.get_repo)
    app.router.add_get(API + "/repositories/{id}", gt.get_repo_by_id)
    app.router.add_get(repo + "/pulls", gt.list_pulls)
    app.router.add_get(repo + "/pulls/{index}", gt.get_pull)
    app.router.add_get(repo + "/pulls/{index}/reviews", gt.reviews)
    app.router.add_get(repo + "/commits/{ref}/status", gt.commit_status)
    from repo_updater.emulator import gitea_writes  # it builds on this module's helpers

    gitea_writes.add_routes(app, gt)  # before /pulls/{base}/{head}, which would shadow them
    from repo_updater.emulator import gitea_files

    gitea_files.add_routes(app, gt)  # files, branches, multi-file commits
    app.router.add_get(repo + "/pulls/{base}/{head}", gt.pull_by_branches)
    permissions.add_gitea_routes(app, host, API, gt._repo)
    return app
