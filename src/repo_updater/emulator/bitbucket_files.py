"""Bitbucket Server / Data Center file endpoints in the emulator (mounted by
``bitbucket.build_app``), after the Bitbucket Data Center REST API (1.0):

- ``GET .../repos/{slug}/default-branch``: ``displayId`` and ``latestCommit``;
- ``GET .../repos/{slug}/branches?filterText=``: branches whose name contains the text;
- ``GET .../repos/{slug}/raw/{path}?at=``: the file's content as text (404);
- ``PUT .../repos/{slug}/browse/{path}`` (multipart: ``content``, ``message``, ``branch``,
  ``sourceCommitId``, ``sourceBranch``): edit or create ONE file in one commit on ``branch``,
  which is created from ``sourceBranch`` when it does not exist. Editing an existing file needs
  ``sourceCommitId``, the commit the edit was made against (409 when the branch has moved
  since). The API cannot delete a file.

An edit is a write: 409 ``RepositoryArchivedException`` on an archived repository, the
secondary write limit first.
"""

from __future__ import annotations

from aiohttp import web

from repo_updater.emulator import merge_rules
from repo_updater.emulator.bitbucket import API, _Bitbucket, _error
from repo_updater.emulator.bitbucket_writes import _ARCHIVED, _EXC
from repo_updater.emulator.state import EmulatedRepo

_NO_FILE = _EXC + "content.NoSuchPathException"


def add_routes(app: web.Application, bb: _Bitbucket) -> None:
    files = _Files(bb)
    repo = API + "/projects/{key}/repos/{slug}"
    app.router.add_get(repo + "/default-branch", files.default_branch)
    app.router.add_get(repo + "/branches", files.branches)
    app.router.add_get(repo + "/raw/{path:.+}", files.raw)
    app.router.add_put(repo + "/browse/{path:.+}", files.edit)


def _branch(ref: str) -> str:
    return ref.removeprefix("refs/heads/")


class _Files:
    def __init__(self, bb: _Bitbucket) -> None:
        self.bb = bb
        self.host = bb.host

    async def default_branch(self, request: web.Request) -> web.Response:
        repo = self.bb._repo(request)
        if isinstance(repo, web.Response):
            return repo
        name = repo.default_branch
        return web.json_response(
            {
                "id": f"refs/heads/{name}",
                "displayId": name,
                "latestCommit": repo.git.branches[name],
                "isDefault": True,
            }
        )

    async def branches(self, request: web.Request) -> web.Response:
        repo = self.bb._repo(request)
        if isinstance(repo, web.Response):
            return repo
        text = request.query.get("filterText", "")
        values = [
            {"id": f"refs/heads/{name}", "displayId": name, "latestCommit": head}
            for name, head in sorted(repo.git.branches.items())
            if text in name
        ]
        return web.json_response(
            {"size": len(values), "limit": 25, "start": 0, "isLastPage": True, "values": values}
        )

    async def raw(self, request: web.Request) -> web.Response:
        repo = self.bb._repo(request)
        if isinstance(repo, web.Response):
            return repo
        path = request.match_info["path"]
        at = _branch(request.query.get("at") or repo.default_branch)
        content = repo.git.file(at, path)
        if content is None:
            return _error(404, f'The path "{path}" does not exist at revision "{at}"', _NO_FILE)
        return web.Response(text=content, content_type="text/plain")

    async def edit(self, request: web.Request) -> web.Response:
        repo = self.bb._repo(request)
        if isinstance(repo, web.Response):
            return repo
        if merge_rules.over_limit(self.host):
            answer = _error(429, "Rate limit exceeded", _EXC + "throttle.ThrottledException")
            answer.headers["Retry-After"] = str(self.host.writes.retry_after)
        elif repo.archived:
            answer = _error(
                409, "Editing files isn't supported on archived repositories.", _ARCHIVED
            )
        else:
            answer = await self._edit(request, repo)
        merge_rules.log_write(self.host, "commit", repo, None, answer.status)
        return answer

    async def _edit(self, request: web.Request, repo: EmulatedRepo) -> web.Response:
        form = await request.post()
        path = request.match_info["path"]
        field = form.get("content")
        content: str | None
        if field is None or isinstance(field, str):
            content = field
        elif isinstance(field, bytes | bytearray):
            content = bytes(field).decode()
        else:
            content = field.file.read().decode()
        branch = _branch(str(form.get("branch") or ""))
        message = str(form.get("message") or f"Edit {path}")
        source_commit = str(form.get("sourceCommitId") or "")
        git = repo.git
        if content is None or not branch:
            return _error(400, "content and branch are required", _EXC + "validation")
        start = branch
        if branch not in git.branches:
            start = _branch(str(form.get("sourceBranch") or ""))
            if start not in git.branches:
                return _error(
                    404,
                    f"Branch {branch} does not exist and no sourceBranch was given.",
                    _EXC + "repository.NoSuchBranchException",
                )
        exists = git.file(start, path) is not None
        if exists and source_commit != git.branches[start]:
            return _error(
                409,
                f'The file "{path}" has been modified since {source_commit}.',
                _EXC + "content.FileContentModificationException",
            )
        made = git.commit_files(start, {path: str(content)}, message)
        git.branches[branch] = made.sha
        return web.json_response(
            {
                "id": made.sha,
                "displayId": made.sha[:11],
                "message": message,
                "parents": [{"id": p} for p in made.parents],
            }
        )
