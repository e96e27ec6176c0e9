"""Bitbucket Server / Data Center write endpoints in the emulator (mounted by
``bitbucket.build_app``), after the Bitbucket Data Center REST OpenAPI description (9.2) and
real 409 bodies recorded in Sourcegraph's test fixtures (see /work/research/writes/REPORT.md,
A.4, A.5):

- ``POST .../pull-requests``: 201; 409 ``DuplicatePullRequestException`` (with
  ``existingPullRequest``) for an open one on the same branches;
- ``PUT .../pull-requests/{id}``: a full replace: ``version`` (required), ``title``,
  ``description``, ``draft`` (8.18+), ``reviewers`` (omitted ones are removed);
- ``POST .../pull-requests/{id}/{decline,reopen,merge}?version=N``; merge ``strategyId``
  (``no-ff``, ``ff``, ``squash``, ``rebase-no-ff``, ...);
- ``POST .../pull-requests/{id}/comments`` ``{"text"}``, ``GET .../activities`` (newest first).

A ``version`` that is not the pull request's current one answers 409
``PullRequestOutOfDateException`` "You are attempting to modify a pull request based on
out-of-date information." with ``currentVersion``, ``expectedVersion`` and the current
``pullRequest``. A merge blocked by conflicts, a draft or merge checks (approvals, builds) is
409 ``PullRequestMergeVetoedException`` with ``vetoes``. Writes to an archived repository
(8.0+) are 409 ``RepositoryArchivedException`` (the comment text is Bitbucket's documented
one; the others follow it, unverified against a live server). Every write counts against the
secondary write limit first (429 with ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from repo_updater.core.domain import HostPullState
from repo_updater.emulator import merge_rules
from repo_updater.emulator.bitbucket import API, _Bitbucket, _error
from repo_updater.emulator.listing import epoch_ms, int_param, json_body
from repo_updater.emulator.merge_rules import Blocker
from repo_updater.emulator.state import EmulatedPull, EmulatedRepo

_EXC = "com.atlassian.bitbucket."
_ARCHIVED = _EXC + "repository.RepositoryArchivedException"
_STRATEGIES = {
    "no-ff": "merge",
    "ff": "merge",
    "ff-only": "merge",
    "squash": "squash",
    "squash-ff-only": "squash",
    "rebase-no-ff": "rebase",
    "rebase-ff-only": "rebase",
}
_VETO = {
    Blocker.CONFLICT: "The pull request has conflicts and cannot be merged.",
    Blocker.DRAFT: "Draft pull requests cannot be merged.",
    Blocker.APPROVALS: "You need more approvals before this pull request can be merged.",
    Blocker.CHECKS: "You need a successful build before this pull request can be merged.",
    Blocker.METHOD: "The merge strategy is not enabled for this repository.",
}
Write = Callable[[web.Request, EmulatedRepo, EmulatedPull], Awaitable[web.Response]]


def add_routes(app: web.Application, bb: _Bitbucket) -> None:
    writes = _Writes(bb)
    pulls = API + "/projects/{key}/repos/{slug}/pull-requests"
    app.router.add_post(pulls, writes.create_pull)
    app.router.add_put(pulls + "/{id}", writes.on_pull("update", writes.update_pull))
    app.router.add_post(pulls + "/{id}/decline", writes.on_pull("decline", writes.decline))
    app.router.add_post(pulls + "/{id}/reopen", writes.on_pull("reopen", writes.reopen))
    app.router.add_post(pulls + "/{id}/merge", writes.on_pull("merge", writes.merge))
    app.router.add_post(pulls + "/{id}/comments", writes.on_pull("comment", writes.comment))
    app.router.add_get(pulls + "/{id}/activities", writes.activities)


def _archived(comment: bool) -> web.Response:
    text = (
        "Adding, deleting, or editing comments isn't supported on archived repositories."
        if comment
        else "Modifying pull requests isn't supported on archived repositories."
    )
    return _error(409, text, _ARCHIVED)


class _Writes:
    def __init__(self, bb: _Bitbucket) -> None:
        self.bb = bb
        self.host = bb.host

    def _refusal(self, repo: EmulatedRepo, action: str) -> web.Response | None:
        if merge_rules.over_limit(self.host):
            response = _error(429, "Rate limit exceeded", _EXC + "throttle.ThrottledException")
            response.headers["Retry-After"] = str(self.host.writes.retry_after)
            return response
        if repo.archived:
            return _archived(action == "comment")
        return None

    def _pull(self, request: web.Request) -> tuple[EmulatedRepo, EmulatedPull] | web.Response:
        repo = self.bb._repo(request)
        if isinstance(repo, web.Response):
            return repo
        pid = request.match_info["id"]
        pull = repo.pulls.get(int(pid)) if pid.isdigit() else None
        if pull is None:
            return _error(
                404,
                f"Pull request {pid} does not exist in {repo.owner}/{repo.name}.",
                _EXC + "pull.NoSuchPullRequestException",
            )
        return repo, pull

    def on_pull(
        self, action: str, write: Write
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            found = self._pull(request)
            if isinstance(found, web.Response):
                return found
            repo, pull = found
            answer = self._refusal(repo, action) or await write(request, repo, pull)
            merge_rules.log_write(self.host, action, repo, pull.number, answer.status)
            return answer

        return handler

    def _json(self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull) -> web.Response:
        return web.json_response(self.bb.pull_json(repo, pull, self.bb.root(request)))

    def _stale(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull, given: Any
    ) -> web.Response | None:
        """409 out of date when the request names another version than the current one."""
        try:
            expected = int(given)
        except (TypeError, ValueError):
            return None if given is None else _error(400, "version must be a number", "")
        if expected == pull.version:
            return None
        body = {
            "errors": [
                {
                    "context": None,
                    "message": "You are attempting to modify a pull request based on "
                    "out-of-date information.",
                    "exceptionName": _EXC + "pull.PullRequestOutOfDateException",
                    "currentVersion": pull.version,
                    "expectedVersion": expected,
                    "pullRequest": self.bb.pull_json(repo, pull, self.bb.root(request)),
                }
            ]
        }
        return web.json_response(body, status=409)

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        body = await json_body(request) if request.can_read_body else {}
        return {**body, **request.query}

    async def create_pull(self, request: web.Request) -> web.Response:
        repo = self.bb._repo(request)
        if isinstance(repo, web.Response):
            return repo
        answer = self._refusal(repo, "create") or await self._create(request, repo)
        merge_rules.log_write(self.host, "create", repo, None, answer.status)
        return answer

    async def _create(self, request: web.Request, repo: EmulatedRepo) -> web.Response:
        params = await json_body(request)
        head = str((params.get("fromRef") or {}).get("id") or "").removeprefix("refs/heads/")
        base = str((params.get("toRef") or {}).get("id") or "").removeprefix("refs/heads/")
        title = str(params.get("title") or "")
        if not (head and base and title):
            return _error(400, "title, fromRef and toRef are required", "")
        for other in repo.pulls.values():
            if (other.head_ref, other.base_ref) == (head, base) and other.state in (
                HostPullState.OPEN,
                HostPullState.DRAFT,
            ):
                body = {
                    "errors": [
                        {
                            "context": None,
                            "message": "Only one pull request may be open for a given source "
                            "and target branch",
                            "exceptionName": _EXC + "pull.DuplicatePullRequestException",
                            "existingPullRequest": self.bb.pull_json(
                                repo, other, self.bb.root(request)
                            ),
                        }
                    ]
                }
                return web.json_response(body, status=409)
        draft = params.get("draft") is True
        pull = self.host.add_pull(
            repo.full_name,
            title=title,
            state=HostPullState.DRAFT if draft else HostPullState.OPEN,
            head_ref=head,
            base_ref=base,
            body=str(params.get("description") or ""),
        )
        body = self.bb.pull_json(repo, pull, self.bb.root(request))
        return web.json_response(body, status=201)

    async def update_pull(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await json_body(request)
        if "version" not in params:
            return _error(400, "The version of the pull request must be specified.", "")
        stale = self._stale(request, repo, pull, params["version"])
        if stale is not None:
            return stale
        if pull.state not in (HostPullState.OPEN, HostPullState.DRAFT):
            return _error(409, "Only open pull requests may be updated.", "")
        pull.title = str(params.get("title") or pull.title)
        pull.body = str(params.get("description") or "")
        keep = {
            str(((r or {}).get("user") or {}).get("name"))
            for r in params.get("reviewers") or []
            if isinstance(r, dict)
        }
        pull.reviews = [r for r in pull.reviews if r.author in keep]  # a full replace
        if isinstance(params.get("draft"), bool):
            pull.state = HostPullState.DRAFT if params["draft"] else HostPullState.OPEN
        merge_rules.touch(pull)
        return self._json(request, repo, pull)

    async def decline(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await self._params(request)
        stale = self._stale(request, repo, pull, params.get("version"))
        if stale is not None:
            return stale
        if pull.state not in (HostPullState.OPEN, HostPullState.DRAFT):
            return _error(409, "The pull request is not open.", "")
        self.host.set_pull_state(repo.full_name, pull.number, HostPullState.CLOSED)
        return self._json(request, repo, pull)

    async def reopen(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await self._params(request)
        stale = self._stale(request, repo, pull, params.get("version"))
        if stale is not None:
            return stale
        if pull.state is not HostPullState.CLOSED:
            return _error(409, "Only declined pull requests may be reopened.", "")
        self.host.set_pull_state(repo.full_name, pull.number, HostPullState.OPEN)
        return self._json(request, repo, pull)

    async def merge(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await self._params(request)
        stale = self._stale(request, repo, pull, params.get("version"))
        if stale is not None:
            return stale
        if pull.state in (HostPullState.CLOSED, HostPullState.MERGED):
            return _error(409, "The pull request is not open.", "")
        method = _STRATEGIES.get(str(params.get("strategyId") or "no-ff"))
        if method is None:
            return _error(400, "Unknown merge strategy.", "")
        check = merge_rules.merge_check(pull, self.host.writes.for_repo(repo.id), method)
        if check.blocker is not None:
            veto = _VETO.get(check.blocker, "The pull request cannot be merged.")
            body = {
                "errors": [
                    {
                        "context": None,
                        "message": veto,
                        "exceptionName": _EXC + "pull.PullRequestMergeVetoedException",
                        "conflicted": check.blocker is Blocker.CONFLICT,
                        "vetoes": [{"summaryMessage": veto, "detailedMessage": veto}],
                    }
                ]
            }
            return web.json_response(body, status=409)
        merge_rules.merge(self.host, repo, pull)
        return self._json(request, repo, pull)

    async def comment(
        self, request: web.Request, _repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await json_body(request)
        text = params.get("text")
        if not isinstance(text, str) or not text:
            return _error(400, "The comment text must not be empty.", "")
        c = merge_rules.add_comment(pull, text)
        body = {"id": c.id, "version": 0, "text": c.body, "author": {"name": c.author}}
        return web.json_response({**body, "createdDate": epoch_ms(c.at)}, status=201)

    async def activities(self, request: web.Request) -> web.Response:
        found = self._pull(request)
        if isinstance(found, web.Response):
            return found
        _, pull = found
        comments = sorted(pull.comments, key=lambda c: (c.at, c.id), reverse=True)
        limit = int_param(request, "limit", 25, lo=1, hi=1000)
        start = int_param(request, "start", 0, lo=0, hi=1 << 40)
        chunk = comments[start : start + limit]
        values = [
            {
                "id": c.id,
                "createdDate": epoch_ms(c.at),
                "user": {"name": c.author},
                "action": "COMMENTED",
                "commentAction": "ADDED",
                "comment": {"id": c.id, "text": c.body, "createdDate": epoch_ms(c.at)},
            }
            for c in chunk
        ]
        last = start + limit >= len(comments)
        body: dict[str, Any] = {
            "size": len(chunk),
            "limit": limit,
            "start": start,
            "isLastPage": last,
            "values": values,
        }
        if not last:
            body["nextPageStart"] = start + limit
        return web.json_response(body)
