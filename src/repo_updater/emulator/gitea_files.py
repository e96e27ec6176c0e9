"""Gitea's file endpoints in the emulator (mounted by ``gitea.build_app``), after Gitea's API
(``routers/api/v1/repo/file.go``, ``ChangeFilesOptions``):

- ``GET /repos/{o}/{r}/contents/{path}?ref=``: a file, base64, with its blob ``sha`` (404);
- ``GET /repos/{o}/{r}/branches/{branch}``: the branch and its head commit (404);
- ``POST /repos/{o}/{r}/contents``: ``branch``, ``new_branch``, ``message`` and ``files``
  (``operation`` create / update / delete, ``path``, ``content`` base64, ``sha`` of the file
  being replaced): ONE commit on ``branch``, or on a new branch ``new_branch`` started from
  it; 201. 422 when ``new_branch`` exists, a created file exists or an updated one does not;
  409 when ``sha`` is not the file's. There is no force: a branch only moves forward.

The commit is a guarded write: 423 (or 404 before Gitea 1.21) on an archived repository, the
secondary write limit first.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from repo_updater.emulator import merge_rules
from repo_updater.emulator.gitea import API, _error, _Gitea
from repo_updater.emulator.gitea_writes import _Writes
from repo_updater.emulator.listing import json_body
from repo_updater.emulator.state import EmulatedRepo


def add_routes(app: web.Application, gt: _Gitea) -> None:
    files = _Files(gt)
    repo = API + "/repos/{owner}/{repo}"
    app.router.add_get(repo + "/contents/{path:.+}", files.get_file)
    app.router.add_get(repo + "/branches/{branch:.+}", files.get_branch)
    app.router.add_post(repo + "/contents", files.change_files)


class _Files:
    def __init__(self, gt: _Gitea) -> None:
        self.gt = gt
        self.host = gt.host
        self.writes = _Writes(gt)

    async def get_file(self, request: web.Request) -> web.Response:
        repo = self.gt._repo(request)
        if isinstance(repo, web.Response):
            return repo
        path = request.match_info["path"]
        content = repo.git.file(request.query.get("ref") or repo.default_branch, path)
        if content is None:
            return _error(request, 404, "GetContentsOrList")
        return web.json_response(
            {
                "type": "file",
                "encoding": "base64",
                "path": path,
                "name": path.rpartition("/")[2],
                "sha": repo.git.blob(content),
                "size": len(content.encode()),
                "content": base64.b64encode(content.encode()).decode(),
            }
        )

    async def get_branch(self, request: web.Request) -> web.Response:
        repo = self.gt._repo(request)
        if isinstance(repo, web.Response):
            return repo
        name = request.match_info["branch"]
        head = repo.git.branches.get(name)
        if head is None:
            return _error(request, 404, "The target couldn't be found.")
        message = repo.git.commits[head].message
        return web.json_response({"name": name, "commit": {"id": head, "message": message}})

    async def change_files(self, request: web.Request) -> web.Response:
        repo = self.gt._repo(request)
        if isinstance(repo, web.Response):
            return repo
        answer = self.writes._refusal(request, repo, guarded=True) or self._change(
            request, repo, await json_body(request)
        )
        merge_rules.log_write(self.host, "commit", repo, None, answer.status)
        return answer

    def _change(
        self, request: web.Request, repo: EmulatedRepo, body: dict[str, Any]
    ) -> web.Response:
        git = repo.git
        branch = body.get("branch") or repo.default_branch
        new_branch, message, files = body.get("new_branch"), body.get("message"), body.get("files")
        if branch not in git.branches:
            return _error(request, 404, f"branch {branch} does not exist")
        if new_branch and new_branch in git.branches:
            return _error(request, 422, f"branch already exists [name: {new_branch}]")
        if not isinstance(files, list) or not files:
            return _error(request, 422, "files is required")
        before = git.files(str(branch)) or {}
        changes: dict[str, str | None] = {}
        for item in files:
            op = item.get("operation") if isinstance(item, dict) else None
            path = item.get("path") if isinstance(item, dict) else None
            if op not in ("create", "update", "delete") or not isinstance(path, str):
                return _error(request, 422, "operation and path are required")
            current = before.get(path)
            if op == "create" and current is not None:
                return _error(request, 422, f"repository file already exists [path: {path}]")
            if op != "create" and current is None:
                return _error(request, 422, f"repository file does not exist [path: {path}]")
            if op != "create" and item.get("sha") != git.blob(str(current)):
                return _error(request, 409, f"sha does not match [given: {item.get('sha')}]")
            if op == "delete":
                changes[path] = None
                continue
            try:
                changes[path] = base64.b64decode(str(item.get("content", ""))).decode()
            except (binascii.Error, UnicodeDecodeError):
                return _error(request, 422, "content must be base64")
        made = git.commit_files(str(branch), changes, str(message or "Update files"))
        git.branches[str(new_branch or branch)] = made.sha
        return web.json_response(
            {"files": [], "commit": {"sha": made.sha, "message": made.message}}, status=201
        )
