"""Bitbucket Server (Data Center) REST 1.0 emulator routes (mounted under ``/bitbucket``; API
under ``/rest/api/1.0``).

Modelled: project repo listing and per-repo pull-request listing with Bitbucket's paged
envelope (``size``, ``limit``, ``start``, ``isLastPage``, ``nextPageStart``, ``values``; limit
capped at 1000), single repos (with the ``archived`` flag of Bitbucket 8+), single pull
requests (``fromRef.latestCommit`` is the head commit), and the build statuses of a commit
(``GET /rest/build-status/1.0/commits/{id}``, paged, one status per key: the pull request's
check state as ``INPROGRESS``/``SUCCESSFUL``/``FAILED``). Timestamps are epoch milliseconds.
Errors use Bitbucket's ``{"errors": [...]}`` body. The write routes (create, update, decline,
reopen, merge, comments) are in ``bitbucket_writes``. Project keys are the emulated repos'
``owner``; a project whose repos are all gone still exists and lists an empty page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator import permissions
from repo_updater.emulator.faults import fault_middleware
from repo_updater.emulator.listing import epoch_ms, int_param
from repo_updater.emulator.state import EmulatedPull, EmulatedRepo, EmulatorState, HostState

API = "/rest/api/1.0"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 25

_STATE = {
    HostPullState.OPEN: "OPEN",
    HostPullState.DRAFT: "OPEN",
    HostPullState.CLOSED: "DECLINED",
    HostPullState.MERGED: "MERGED",
}
_REVIEWER_STATUS = {ReviewState.APPROVED: "APPROVED", ReviewState.CHANGES_REQUESTED: "NEEDS_WORK"}
_BUILD_STATE = {
    CheckState.PENDING: "INPROGRESS",
    CheckState.PASSED: "SUCCESSFUL",
    CheckState.FAILED: "FAILED",
}

T = TypeVar("T")


def _error(status: int, message: str, exception: str) -> web.Response:
    body = {"errors": [{"context": None, "message": message, "exceptionName": exception}]}
    return web.json_response(body, status=status)


def _no_project(key: str) -> web.Response:
    return _error(
        404,
        f"Project {key} does not exist.",
        "com.atlassian.bitbucket.project.NoSuchProjectException",
    )


def _no_repo(slug: str) -> web.Response:
    return _error(
        404,
        f"Repository {slug} does not exist.",
        "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
    )


def _paged(
    request: web.Request, items: Sequence[T], render: Callable[[T], dict[str, Any]]
) -> web.Response:
    limit = int_param(request, "limit", DEFAULT_LIMIT, lo=1, hi=MAX_LIMIT)
    start = int_param(request, "start", 0, lo=0, hi=1 << 40)
    chunk = items[start : start + limit]
    last = start + limit >= len(items)
    body: dict[str, Any] = {
        "size": len(chunk),
        "limit": limit,
        "start": start,
        "isLastPage": last,
        "values": [render(x) for x in chunk],
    }
    if not last:
        body["nextPageStart"] = start + limit
    return web.json_response(body)


class _Bitbucket:
    def __init__(self, host: HostState) -> None:
        self.host = host

    @staticmethod
    def root(request: web.Request) -> str:
        raw = request.raw_path
        return str(request.url.origin()) + raw[: raw.index(API)]

    def repo_json(self, repo: EmulatedRepo, root: str) -> dict[str, Any]:
        key, slug = repo.owner, repo.name
        data: dict[str, Any] = {
            "slug": slug,
            "id": repo.id,
            "name": slug,
            "description": repo.description,
            "scmId": "git",
            "state": "AVAILABLE",
            "statusMessage": "Available",
            "forkable": True,
            "archived": repo.archived,
            "public": not repo.private,
            "project": {"key": key, "id": 0, "name": key, "type": "NORMAL"},
            "links": {
                "clone": [{"href": f"{root}/scm/{key.lower()}/{slug}.git", "name": "http"}],
                "self": [{"href": f"{root}/projects/{key}/repos/{slug}/browse"}],
            },
        }
        if repo.fork:
            # The emulator does not track fork parents; Bitbucket sends the parent here.
            data["origin"] = {"slug": slug, "project": {"key": f"~{key.lower()}"}}
        return data

    def pull_json(self, repo: EmulatedRepo, pull: EmulatedPull, root: str) -> dict[str, Any]:
        state = _STATE[pull.state]
        ref = {"slug": repo.name, "project": {"key": repo.owner}}
        return {
            "id": pull.number,
            "version": pull.version,
            "title": pull.title,
            "description": pull.body,
            "state": state,
            "open": state == "OPEN",
            "closed": state != "OPEN",
            "draft": pull.state is HostPullState.DRAFT,
            "createdDate": epoch_ms(pull.created_at),
            "updatedDate": epoch_ms(pull.updated_at),
            "closedDate": epoch_ms(pull.closed_at),
            "fromRef": {
                "id": f"refs/heads/{pull.head_ref}",
                "displayId": pull.head_ref,
                "latestCommit": commit_id(repo, pull),
                "repository": ref,
            },
            "toRef": {
                "id": f"refs/heads/{pull.base_ref}",
                "displayId": pull.base_ref,
                "repository": ref,
            },
            "locked": False,
            "author": {"user": {"name": pull.author, "slug": pull.author}, "role": "AUTHOR"},
            "reviewers": [
                {
                    "user": {"name": r.author, "slug": r.author},
                    "role": "REVIEWER",
                    "approved": r.state is ReviewState.APPROVED,
                    "status": _REVIEWER_STATUS.get(r.state, "UNAPPROVED"),
                }
                for r in pull.reviews
            ],
            "links": {
                "self": [
                    {
                        "href": f"{root}/projects/{repo.owner}/repos/{repo.name}"
                        f"/pull-requests/{pull.number}"
                    }
                ]
            },
        }

    def _repo(self, request: web.Request) -> EmulatedRepo | web.Response:
        key, slug = request.match_info["key"], request.match_info["slug"]
        repo = self.host.find_repo(f"{key}/{slug}")
        if repo is None:
            return _no_repo(slug) if self.host.owner_exists(key) else _no_project(key)
        return repo

    async def project_repos(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if not self.host.owner_exists(key):
            return _no_project(key)
        repos = self.host.owner_repos(key)
        root = self.root(request)
        return _paged(request, repos, lambda r: self.repo_json(r, root))

    async def get_repo(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        return web.json_response(self.repo_json(repo, self.root(request)))

    async def list_pulls(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        wanted = request.query.get("state", "OPEN").upper()
        pulls = sorted(repo.pulls.values(), key=lambda p: p.number, reverse=True)
        if wanted != "ALL":
            pulls = [p for p in pulls if _STATE[p.state] == wanted]
        root = self.root(request)
        return _paged(request, pulls, lambda p: self.pull_json(repo, p, root))

    async def get_pull(self, request: web.Request) -> web.Response:
        repo = self._repo(request)
        if isinstance(repo, web.Response):
            return repo
        pid = request.match_info["id"]
        pull = repo.pulls.get(int(pid)) if pid.isdigit() else None
        if pull is None:
            return _error(
                404,
                f"Pull request {pid} does not exist in {repo.owner}/{repo.name}.",
                "com.atlassian.bitbucket.pull.NoSuchPullRequestException",
            )
        return web.json_response(self.pull_json(repo, pull, self.root(request)))

    async def build_statuses(self, request: web.Request) -> web.Response:
        """``BuildStatusService.findAll``: newest first, one per key. A commit nobody built
        (or unknown) has none: an empty page, not a 404."""
        pull = self._pull_of_commit(request.match_info["commit"])
        state = None if pull is None else _BUILD_STATE.get(pull.check_state)
        statuses: list[dict[str, Any]] = []
        if pull is not None and state is not None:
            statuses.append(
                {
                    "state": state,
                    "key": "ci",
                    "name": "CI",
                    "url": "https://ci.example.com/builds/1",
                    "description": f"build {state.lower()}",
                    "dateAdded": epoch_ms(pull.updated_at),
                }
            )
        return _paged(request, statuses, lambda s: s)

    def _pull_of_commit(self, commit: str) -> EmulatedPull | None:
        if len(commit) != 40:
            return None
        try:
            repo_id, number = int(commit[:8], 16), int(commit[8:], 16)
        except ValueError:
            return None
        repo = self.host.repos.get(repo_id)
        return None if repo is None else repo.pulls.get(number)


def commit_id(repo: EmulatedRepo, pull: EmulatedPull) -> str:
    """The emulated head commit of a pull request (the repo id and number, hex, 40 chars)."""
    return f"{repo.id:08x}{pull.number:032x}"


def build_app(state: EmulatorState) -> web.Application:
    host = state.host(HostKind.BITBUCKET_SERVER)
    bb = _Bitbucket(host)
    app = web.Application(middlewares=[fault_middleware(host, "none")])
    repo = API + "/projects/{key}/repos/{slug}"
    app.router.add_get(API + "/projects/{key}/repos", bb.project_repos)
    app.router.add_get(repo, bb.get_repo)
    app.router.add_get(repo + "/pull-requests", bb.list_pulls)
    app.router.add_get(repo + "/pull-requests/{id}", bb.get_pull)
    app.router.add_get("/rest/build-status/1.0/commits/{commit}", bb.build_statuses)
    permissions.add_bitbucket_routes(app, host, API, bb._repo, _paged)
    from repo_updater.emulator import bitbucket_writes  # it builds on this module's helpers

    bitbucket_writes.add_routes(app, bb)
    from repo_updater.emulator import bitbucket_files

    bitbucket_files.add_routes(app, bb)  # default branch, branches, raw files, file edits
    return app
