"""Gitea's write endpoints in the emulator (mounted by ``gitea.build_app``), after Gitea's
``routers/api/v1/repo/pull.go``, ``services/forms/repo_form.go`` and ``api.go``'s
``mustNotBeArchived`` (see /work/research/writes/REPORT.md, A.3, A.5):

- ``POST /repos/{o}/{r}/pulls``: 201; 409 "pull request already exists for these targets"
  for an open one on the same head and base; a ``WIP:`` title opens a draft;
- ``PATCH /repos/{o}/{r}/pulls/{index}``: state, title, body, base; answers 201. Not guarded
  by ``mustNotBeArchived``: it succeeds on an archived repository, as on Gitea;
- ``POST .../pulls/{index}/merge``: ``Do`` (or ``do``) = merge, rebase, rebase-merge, squash;
  200 with no body; 404 for a closed pull request; 405 "PR already merged", "Work in progress
  PRs cannot be merged", "Please try again later" (conflicts), "PR is not ready to be merged"
  (protected-branch approvals or status checks), "<style> is not allowed an allowed merge style
  for this repository";
- ``POST|GET /repos/{o}/{r}/issues/{index}/comments`` (``since``).

Guarded writes (create, merge, comment) to an archived repository answer ``423 Locked``
"<Repository id:o/r> is archived" from Gitea 1.21 (``WriteRules.gitea_version``) and ``404``
before it. Every write counts against the secondary write limit first (429 with
``Retry-After``, as a proxy in front of Gitea would answer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from repo_updater.core.domain import HostPullState
from repo_updater.emulator import merge_rules
from repo_updater.emulator.gitea import API, WIP_PREFIXES, _error, _Gitea
from repo_updater.emulator.listing import iso, json_body
from repo_updater.emulator.merge_rules import Blocker
from repo_updater.emulator.state import EmulatedComment, EmulatedPull, EmulatedRepo

_OPEN = (HostPullState.OPEN, HostPullState.DRAFT)
_STYLES = {"merge": "merge", "rebase": "rebase", "rebase-merge": "rebase", "squash": "squash"}
Write = Callable[[web.Request, EmulatedRepo, EmulatedPull], Awaitable[web.Response]]


def add_routes(app: web.Application, gt: _Gitea) -> None:
    writes = _Writes(gt)
    repo = API + "/repos/{owner}/{repo}"
    app.router.add_post(repo + "/pulls", writes.create_pull)
    app.router.add_patch(repo + "/pulls/{index}", writes.on_pull("update", writes.edit_pull))
    merge = writes.on_pull("merge", writes.merge_pull, guarded=True)
    app.router.add_post(repo + "/pulls/{index}/merge", merge)
    comment = writes.on_pull("comment", writes.add_comment, guarded=True)
    app.router.add_post(repo + "/issues/{index}/comments", comment)
    app.router.add_get(repo + "/issues/{index}/comments", writes.list_comments)


def comment_json(comment: EmulatedComment, html_url: str) -> dict[str, Any]:
    return {
        "id": comment.id,
        "body": comment.body,
        "user": {"login": comment.author},
        "created_at": iso(comment.at),
        "updated_at": iso(comment.at),
        "html_url": f"{html_url}#issuecomment-{comment.id}",
    }


class _Writes:
    def __init__(self, gt: _Gitea) -> None:
        self.gt = gt
        self.host = gt.host

    def _refusal(
        self, request: web.Request, repo: EmulatedRepo, *, guarded: bool
    ) -> web.Response | None:
        if merge_rules.over_limit(self.host):
            response = _error(request, 429, "Too Many Requests")
            response.headers["Retry-After"] = str(self.host.writes.retry_after)
            return response
        if guarded and repo.archived:
            if self.host.writes.gitea_version >= (1, 21):
                return _error(request, 423, f"<Repository {repo.id}:{repo.full_name}> is archived")
            return _error(request, 404, "The target couldn't be found.")
        return None

    def on_pull(
        self, action: str, write: Write, *, guarded: bool = False
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            found = self.gt._pull(request)
            if isinstance(found, web.Response):
                return found
            repo, pull = found
            answer = self._refusal(request, repo, guarded=guarded) or await write(
                request, repo, pull
            )
            merge_rules.log_write(self.host, action, repo, pull.number, answer.status)
            return answer

        return handler

    async def create_pull(self, request: web.Request) -> web.Response:
        repo = self.gt._repo(request)
        if isinstance(repo, web.Response):
            return repo
        answer = self._refusal(request, repo, guarded=True) or await self._create(request, repo)
        merge_rules.log_write(self.host, "create", repo, None, answer.status)
        return answer

    async def _create(self, request: web.Request, repo: EmulatedRepo) -> web.Response:
        params = await json_body(request)
        head, base, title = (str(params.get(k) or "") for k in ("head", "base", "title"))
        if not (head and base and title):
            return _error(request, 422, "head, base and title are required")
        for other in repo.pulls.values():
            same = other.head_ref == head and other.base_ref == base
            if same and other.state in _OPEN:
                return _error(
                    request,
                    409,
                    f"pull request already exists for these targets [id: {other.number}]",
                )
        draft = title.lower().startswith(WIP_PREFIXES)
        pull = self.host.add_pull(
            repo.full_name,
            title=title,
            state=HostPullState.DRAFT if draft else HostPullState.OPEN,
            head_ref=head,
            base_ref=base,
            body=str(params.get("body") or ""),
        )
        body = self.gt.pull_json(repo, pull, self.gt.root(request))
        return web.json_response(body, status=201)

    async def edit_pull(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await json_body(request)
        state = params.get("state")
        if state == "closed" and pull.state in _OPEN:
            self.host.set_pull_state(repo.full_name, pull.number, HostPullState.CLOSED)
        elif state == "open" and pull.state is HostPullState.CLOSED:
            self.host.set_pull_state(repo.full_name, pull.number, HostPullState.OPEN)
        for key, attr in (("title", "title"), ("body", "body"), ("base", "base_ref")):
            if isinstance(params.get(key), str):
                setattr(pull, attr, params[key])
                merge_rules.touch(pull)
        if isinstance(params.get("title"), str) and pull.state in _OPEN:
            wip = pull.title.lower().startswith(WIP_PREFIXES)
            pull.state = HostPullState.DRAFT if wip else HostPullState.OPEN
        body = self.gt.pull_json(repo, pull, self.gt.root(request))
        return web.json_response(body, status=201)

    async def merge_pull(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await json_body(request)
        do = str(params.get("Do") or params.get("do") or "")
        if do not in _STYLES:
            return _error(request, 422, "[Do]: Required; must be one of merge, rebase, squash")
        if pull.state is HostPullState.CLOSED:
            return _error(request, 404, "The target couldn't be found.")
        rules = self.host.writes.for_repo(repo.id)
        check = merge_rules.merge_check(pull, rules, _STYLES[do])
        refusal = {
            Blocker.MERGED: "PR already merged",
            Blocker.DRAFT: "Work in progress PRs cannot be merged",
            Blocker.CONFLICT: "Please try again later",
            Blocker.APPROVALS: "PR is not ready to be merged",
            Blocker.CHECKS: "PR is not ready to be merged",
            Blocker.METHOD: f"{do} is not allowed an allowed merge style for this repository",
        }
        if check.blocker is not None and check.blocker in refusal:
            return _error(request, 405, refusal[check.blocker])
        merge_rules.merge(self.host, repo, pull)
        return web.Response(status=200)

    async def add_comment(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = await json_body(request)
        body = params.get("body")
        if not isinstance(body, str) or not body:
            return _error(request, 422, "[Body]: Required")
        comment = merge_rules.add_comment(pull, body)
        html = self.gt.pull_json(repo, pull, self.gt.root(request))["html_url"]
        return web.json_response(comment_json(comment, html), status=201)

    async def list_comments(self, request: web.Request) -> web.Response:
        found = self.gt._pull(request)
        if isinstance(found, web.Response):
            return found
        repo, pull = found
        since = request.query.get("since")
        html = self.gt.pull_json(repo, pull, self.gt.root(request))["html_url"]
        comments = [c for c in pull.comments if since is None or (iso(c.at) or "") >= since]
        return web.json_response([comment_json(c, html) for c in comments])
