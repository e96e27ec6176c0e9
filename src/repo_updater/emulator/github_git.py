"""GitHub's file and Git Data endpoints in the emulator (mounted by ``github.build_app``),
after GitHub's REST documentation:

- ``GET /repos/{o}/{r}/contents/{path}?ref=``: a file, base64 (404 when absent);
- ``GET /repos/{o}/{r}/branches/{branch}``: the branch's commit and its tree;
- ``POST /repos/{o}/{r}/git/trees``: ``base_tree`` plus entries (``content``, or ``sha: null``
  to delete), 201;
- ``POST /repos/{o}/{r}/git/commits``: ``message``, ``tree``, ``parents``, 201;
- ``POST /repos/{o}/{r}/git/refs``: ``ref`` (``refs/heads/...``) and ``sha``, 201; 422
  "Reference already exists";
- ``PATCH /repos/{o}/{r}/git/refs/heads/{branch}``: ``sha``, ``force``; 422 "Update is not a
  fast forward" without ``force`` when it is not one.

The three writes count against the secondary write limit and answer ``403 Repository was
archived so is read-only.`` on an archived repository, like the pull request writes.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from repo_updater.emulator import merge_rules
from repo_updater.emulator.github import (
    ARCHIVED_MESSAGE,
    _GitHubRest,
    _json_object,
    json_response,
    message,
    not_found,
)
from repo_updater.emulator.github_writes import _secondary_limit
from repo_updater.emulator.state import EmulatedRepo


def add_routes(app: web.Application, api: _GitHubRest, roots: tuple[str, ...]) -> None:
    git = _Git(api)
    for root in roots:
        repo = root + "/repos/{owner}/{repo}"
        app.router.add_get(repo + "/contents/{path:.+}", git.get_contents)
        app.router.add_get(repo + "/branches/{branch:.+}", git.get_branch)
        app.router.add_post(repo + "/git/trees", git.create_tree)
        app.router.add_post(repo + "/git/commits", git.create_commit)
        app.router.add_post(repo + "/git/refs", git.create_ref)
        app.router.add_patch(repo + "/git/refs/heads/{branch:.+}", git.update_ref)


def _unprocessable(text: str) -> web.Response:
    return message(422, text)


class _Git:
    def __init__(self, api: _GitHubRest) -> None:
        self.api = api
        self.host = api.host

    async def get_contents(self, request: web.Request) -> web.Response:
        repo = self.api._repo(request)
        if isinstance(repo, web.Response):
            return repo
        path = request.match_info["path"]
        content = repo.git.file(request.query.get("ref") or repo.default_branch, path)
        if content is None:
            return not_found()
        blob = repo.git.blob(content)
        return json_response(
            {
                "type": "file",
                "encoding": "base64",
                "path": path,
                "name": path.rpartition("/")[2],
                "sha": blob,
                "size": len(content.encode()),
                "content": base64.b64encode(content.encode()).decode(),
            }
        )

    async def get_branch(self, request: web.Request) -> web.Response:
        repo = self.api._repo(request)
        if isinstance(repo, web.Response):
            return repo
        name = request.match_info["branch"]
        head = repo.git.branches.get(name)
        if head is None:
            return message(404, "Branch not found")
        commit = repo.git.commits[head]
        return json_response(
            {
                "name": name,
                "commit": {
                    "sha": head,
                    "commit": {"tree": {"sha": commit.tree}, "message": commit.message},
                },
            }
        )

    async def _write(
        self, request: web.Request, action: str
    ) -> tuple[EmulatedRepo, dict[str, Any]] | web.Response:
        repo = self.api._repo(request)
        if isinstance(repo, web.Response):
            return repo
        refusal = None
        if merge_rules.over_limit(self.host):
            refusal = _secondary_limit(self.host.writes.retry_after)
        elif repo.archived:
            refusal = message(403, ARCHIVED_MESSAGE)
        body = await _json_object(request)
        if refusal is None and body is None:
            refusal = message(400, "Problems parsing JSON")
        if refusal is not None:
            merge_rules.log_write(self.host, action, repo, None, refusal.status)
            return refusal
        assert body is not None
        return repo, body

    def _done(self, repo: EmulatedRepo, action: str, response: web.Response) -> web.Response:
        merge_rules.log_write(self.host, action, repo, None, response.status)
        return response

    async def create_tree(self, request: web.Request) -> web.Response:
        got = await self._write(request, "tree")
        if isinstance(got, web.Response):
            return got
        repo, body = got
        git = repo.git
        base = body.get("base_tree")
        entries: dict[str, str] = {}
        if base is not None:
            if base not in git.trees:
                return self._done(repo, "tree", _unprocessable("base_tree is not a tree"))
            entries = dict(git.trees[base])
        items = body.get("tree")
        if not isinstance(items, list):
            return self._done(repo, "tree", _unprocessable("tree must be an array"))
        for item in items:
            path = item.get("path") if isinstance(item, dict) else None
            if not isinstance(path, str) or not path:
                return self._done(repo, "tree", _unprocessable("tree entry without a path"))
            if "content" in item and isinstance(item["content"], str):
                entries[path] = git.blob(item["content"])
            elif item.get("sha") is None:
                entries.pop(path, None)
            elif item["sha"] in git.blobs:
                entries[path] = str(item["sha"])
            else:
                return self._done(repo, "tree", _unprocessable(f"no blob {item['sha']}"))
        key = git.tree(entries)
        return self._done(repo, "tree", json_response({"sha": key, "tree": []}, status=201))

    async def create_commit(self, request: web.Request) -> web.Response:
        got = await self._write(request, "commit")
        if isinstance(got, web.Response):
            return got
        repo, body = got
        git = repo.git
        tree, parents, text = body.get("tree"), body.get("parents", []), body.get("message")
        if not isinstance(text, str) or tree not in git.trees:
            return self._done(repo, "commit", _unprocessable("message and tree are required"))
        if not isinstance(parents, list) or any(p not in git.commits for p in parents):
            return self._done(repo, "commit", _unprocessable("parents must be commits"))
        made = git.commit(str(tree), tuple(parents), text)
        answer = {
            "sha": made.sha,
            "tree": {"sha": made.tree},
            "message": made.message,
            "parents": [{"sha": p} for p in made.parents],
        }
        return self._done(repo, "commit", json_response(answer, status=201))

    async def create_ref(self, request: web.Request) -> web.Response:
        got = await self._write(request, "ref")
        if isinstance(got, web.Response):
            return got
        repo, body = got
        ref, target = body.get("ref"), body.get("sha")
        if not isinstance(ref, str) or not ref.startswith("refs/heads/") or target is None:
            return self._done(repo, "ref", _unprocessable("ref and sha are required"))
        if target not in repo.git.commits:
            return self._done(repo, "ref", _unprocessable("Object does not exist"))
        name = ref.removeprefix("refs/heads/")
        if name in repo.git.branches:
            return self._done(repo, "ref", _unprocessable("Reference already exists"))
        repo.git.branches[name] = str(target)
        answer = {"ref": ref, "object": {"sha": target, "type": "commit"}}
        return self._done(repo, "ref", json_response(answer, status=201))

    async def update_ref(self, request: web.Request) -> web.Response:
        got = await self._write(request, "ref")
        if isinstance(got, web.Response):
            return got
        repo, body = got
        name, target = request.match_info["branch"], body.get("sha")
        git = repo.git
        if name not in git.branches:
            return self._done(repo, "ref", _unprocessable("Reference does not exist"))
        if target not in git.commits:
            return self._done(repo, "ref", _unprocessable("Object does not exist"))
        fast_forward = git.branches[name] in git.commits[str(target)].parents
        if not fast_forward and body.get("force") is not True:
            return self._done(repo, "ref", _unprocessable("Update is not a fast forward"))
        git.branches[name] = str(target)
        answer = {"ref": f"refs/heads/{name}", "object": {"sha": target, "type": "commit"}}
        return self._done(repo, "ref", json_response(answer))
