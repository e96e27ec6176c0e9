"""GitLab's repository files and commits API in the emulator (mounted by
``gitlab.build_app``), after GitLab's REST documentation:

- ``GET /projects/:id/repository/files/:file_path?ref=``: the file, base64 (404 "404 File Not
  Found");
- ``POST /projects/:id/repository/commits``: ``branch``, ``start_branch``, ``commit_message``,
  ``actions`` (``create`` / ``update`` / ``delete`` with ``file_path`` and ``content``) and
  ``force``: ONE commit; a new ``branch`` starts at ``start_branch``; an existing one is
  overwritten with a commit on ``start_branch`` when ``force`` is true (400 otherwise). 400 "A
  file with this name already exists" / "A file with this name doesn't exist" when an action
  does not fit the tree.

The commit is a write: the secondary write limit (429) and an archived project (403) refuse it
as they refuse merge request writes.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from repo_updater.emulator import merge_rules
from repo_updater.emulator.gitlab import API, _error, _GitLab
from repo_updater.emulator.listing import json_body


def add_routes(app: web.Application, gl: _GitLab) -> None:
    files = _Files(gl)
    project = API + "/projects/{project}/repository"
    app.router.add_get(project + "/files/{path:.+}", files.get_file)
    app.router.add_post(project + "/commits", files.create_commit)


class _Files:
    def __init__(self, gl: _GitLab) -> None:
        self.gl = gl
        self.host = gl.host

    async def get_file(self, request: web.Request) -> web.Response:
        repo = self.gl.project(request.match_info["project"])
        if repo is None:
            return _error(404, "404 Project Not Found")
        path = unquote(request.match_info["path"])
        ref = request.query.get("ref") or repo.default_branch
        content = repo.git.file(ref, path)
        if content is None:
            return _error(404, "404 File Not Found")
        return web.json_response(
            {
                "file_name": path.rpartition("/")[2],
                "file_path": path,
                "size": len(content.encode()),
                "encoding": "base64",
                "content": base64.b64encode(content.encode()).decode(),
                "ref": ref,
                "blob_id": repo.git.blob(content),
            }
        )

    async def create_commit(self, request: web.Request) -> web.Response:
        repo = self.gl.project(request.match_info["project"])
        if repo is None:
            return _error(404, "404 Project Not Found")
        if merge_rules.over_limit(self.host):
            answer = web.Response(status=429, text="Retry later\n")
            answer.headers["Retry-After"] = str(self.host.writes.retry_after)
        elif repo.archived:
            answer = _error(403, "403 Forbidden")
        else:
            answer = self._commit(repo, await json_body(request))
        merge_rules.log_write(self.host, "commit", repo, None, answer.status)
        return answer

    def _commit(self, repo: Any, body: dict[str, Any]) -> web.Response:
        git = repo.git
        branch, start = body.get("branch"), body.get("start_branch")
        message, actions = body.get("commit_message"), body.get("actions")
        if not isinstance(branch, str) or not isinstance(message, str):
            return _error(400, "branch and commit_message are required")
        if not isinstance(actions, list) or not actions:
            return _error(400, "actions is missing")
        exists = branch in git.branches
        if start is None:
            start = branch
        if start not in git.branches:
            return _error(400, "You can only create or edit files when you are on a branch")
        if exists and start != branch and body.get("force") is not True:
            return _error(400, f"A branch called '{branch}' already exists")
        before = git.files(start) or {}
        changes: dict[str, str | None] = {}
        for action in actions:
            kind = action.get("action") if isinstance(action, dict) else None
            path = action.get("file_path") if isinstance(action, dict) else None
            if kind not in ("create", "update", "delete") or not isinstance(path, str):
                return _error(400, "actions[action] does not have a valid value")
            present = path in before
            if kind == "create" and present:
                return _error(400, "A file with this name already exists")
            if kind in ("update", "delete") and not present:
                return _error(400, "A file with this name doesn't exist")
            content = action.get("content")
            if kind != "delete" and not isinstance(content, str):
                return _error(400, "content is missing")
            changes[path] = None if kind == "delete" else content
        made = git.commit_files(start, changes, message)
        git.branches[branch] = made.sha
        return web.json_response(
            {
                "id": made.sha,
                "short_id": made.sha[:8],
                "message": message,
                "parent_ids": list(made.parents),
            },
            status=201,
        )
