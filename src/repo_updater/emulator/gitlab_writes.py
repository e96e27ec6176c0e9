"""GitLab's write endpoints in the emulator (mounted by ``gitlab.build_app``), after GitLab's
``lib/api/merge_requests.rb``, ``helpers.rb`` and the notes API (see
/work/research/writes/REPORT.md, A.2, A.5):

- ``POST /projects/:id/merge_requests``: 201; 409 ``{"message": ["Another open merge request
  already exists for this source branch: !N"]}`` when one is open for the same source AND
  target branch; a title with a draft prefix opens a draft;
- ``PUT /projects/:id/merge_requests/:iid``: ``state_event`` (close/reopen), ``title``,
  ``description``, ``target_branch``; the title decides draft or not;
- ``PUT .../merge``: 200 the merged MR; 405 "405 Method Not Allowed" when it cannot be merged
  (closed, merged, draft, approvals missing, pipeline not passed where it must); 422 "Branch
  cannot be merged" on conflicts;
- ``POST|GET .../notes`` (``sort``, ``order_by=created_at``, ``per_page``, ``page``).

Every write counts against the secondary write limit first (429 "Retry later" with
``Retry-After``); writes to an archived project answer a bare ``403 {"message": "403
Forbidden"}``, as GitLab does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from repo_updater.core.domain import HostPullState
from repo_updater.emulator import merge_rules
from repo_updater.emulator.gitlab import API, DRAFT_PREFIXES, _error, _GitLab
from repo_updater.emulator.listing import int_param, iso, json_body
from repo_updater.emulator.merge_rules import Blocker
from repo_updater.emulator.state import EmulatedComment, EmulatedPull, EmulatedRepo

_OPEN = (HostPullState.OPEN, HostPullState.DRAFT)
Write = Callable[[web.Request, EmulatedRepo, EmulatedPull], Awaitable[web.Response]]


def add_routes(app: web.Application, gl: _GitLab) -> None:
    writes = _Writes(gl)
    mr = API + "/projects/{project}/merge_requests"
    app.router.add_post(mr, writes.create_mr)
    app.router.add_put(mr + "/{iid}", writes.on_mr("update", writes.update_mr))
    app.router.add_put(mr + "/{iid}/merge", writes.on_mr("merge", writes.merge_mr))
    app.router.add_post(mr + "/{iid}/notes", writes.on_mr("comment", writes.add_note))
    app.router.add_get(mr + "/{iid}/notes", writes.list_notes)


def note_json(note: EmulatedComment) -> dict[str, Any]:
    return {
        "id": note.id,
        "body": note.body,
        "author": {"username": note.author},
        "created_at": iso(note.at, millis=True),
        "updated_at": iso(note.at, millis=True),
        "system": False,
        "noteable_type": "MergeRequest",
    }


class _Writes:
    def __init__(self, gl: _GitLab) -> None:
        self.gl = gl
        self.host = gl.host

    def _refusal(self, repo: EmulatedRepo) -> web.Response | None:
        if merge_rules.over_limit(self.host):
            response = web.Response(status=429, text="Retry later\n")
            response.headers["Retry-After"] = str(self.host.writes.retry_after)
            return response
        if repo.archived:
            return _error(403, "403 Forbidden")
        return None

    def on_mr(self, action: str, write: Write) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A write to one merge request: found, not refused, done, logged."""

        async def handler(request: web.Request) -> web.Response:
            found = self.gl._mr(request)
            if isinstance(found, web.Response):
                return found
            repo, pull = found
            answer = self._refusal(repo) or await write(request, repo, pull)
            merge_rules.log_write(self.host, action, repo, pull.number, answer.status)
            return answer

        return handler

    def _mr(self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull) -> web.Response:
        return web.json_response(self.gl.mr_json(repo, pull, self.gl.root(request), pipeline=True))

    async def update_mr(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = {**request.query, **(await json_body(request))}
        event = params.get("state_event")
        if event == "close" and pull.state in _OPEN:
            self.host.set_pull_state(repo.full_name, pull.number, HostPullState.CLOSED)
        elif event == "reopen" and pull.state is HostPullState.CLOSED:
            self.host.set_pull_state(repo.full_name, pull.number, HostPullState.OPEN)
        for key, attr in (
            ("title", "title"),
            ("description", "body"),
            ("target_branch", "base_ref"),
        ):
            if isinstance(params.get(key), str):
                setattr(pull, attr, params[key])
                merge_rules.touch(pull)
        if "title" in params and pull.state in _OPEN:
            is_draft = pull.title.lower().startswith(DRAFT_PREFIXES)
            pull.state = HostPullState.DRAFT if is_draft else HostPullState.OPEN
        return self._mr(request, repo, pull)

    async def create_mr(self, request: web.Request) -> web.Response:
        repo = self.gl.project(request.match_info["project"])
        if repo is None:
            return _error(404, "404 Project Not Found")
        answer = self._refusal(repo) or await self._create(request, repo)
        merge_rules.log_write(self.host, "create", repo, None, answer.status)
        return answer

    async def _create(self, request: web.Request, repo: EmulatedRepo) -> web.Response:
        params = {**request.query, **(await json_body(request))}
        missing = [k for k in ("source_branch", "target_branch", "title") if not params.get(k)]
        if missing:
            return web.json_response({"error": f"{', '.join(missing)} is missing"}, status=400)
        head, base = str(params["source_branch"]), str(params["target_branch"])
        title = str(params["title"])
        for other in repo.pulls.values():
            same = other.head_ref == head and other.base_ref == base
            if same and other.state in _OPEN:
                return web.json_response(
                    {
                        "message": [
                            "Another open merge request already exists for this source branch: "
                            f"!{other.number}"
                        ]
                    },
                    status=409,
                )
        draft = title.lower().startswith(DRAFT_PREFIXES)
        pull = self.host.add_pull(
            repo.full_name,
            title=title,
            state=HostPullState.DRAFT if draft else HostPullState.OPEN,
            head_ref=head,
            base_ref=base,
            body=str(params.get("description", "")),
        )
        body = self.gl.mr_json(repo, pull, self.gl.root(request), pipeline=True)
        return web.json_response(body, status=201)

    async def merge_mr(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = {**request.query, **(await json_body(request))}
        squash = params.get("squash") in (True, "true")
        rules = self.host.writes.for_repo(repo.id)
        check = merge_rules.merge_check(pull, rules, "squash" if squash else "merge")
        if check.blocker is Blocker.CONFLICT:
            return _error(422, "Branch cannot be merged")
        if not check.ok:
            return _error(405, "405 Method Not Allowed")
        merge_rules.merge(self.host, repo, pull)
        return self._mr(request, repo, pull)

    async def add_note(
        self, request: web.Request, _repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        params = {**request.query, **(await json_body(request))}
        body = params.get("body")
        if not isinstance(body, str) or not body:
            return web.json_response({"error": "body is missing"}, status=400)
        return web.json_response(note_json(merge_rules.add_comment(pull, body)), status=201)

    async def list_notes(self, request: web.Request) -> web.Response:
        found = self.gl._mr(request)
        if isinstance(found, web.Response):
            return found
        _, pull = found
        notes = sorted(pull.comments, key=lambda c: (c.at, c.id))
        if request.query.get("sort", "desc") == "desc":
            notes.reverse()
        per_page = int_param(request, "per_page", 20, lo=1, hi=100)
        page = int_param(request, "page", 1, lo=1, hi=1 << 30)
        chunk = notes[(page - 1) * per_page : page * per_page]
        headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(notes))}
        return web.json_response([note_json(n) for n in chunk], headers=headers)
