"""GitLab's file reads and commits (the ``FileWriter`` half of ``GitLabSource``):

- default branch: ``GET /projects/:id``; a file: ``GET /projects/:id/repository/files/:path``
  with ``ref`` (base64; 404: no such file);
- ONE request per commit: ``POST /projects/:id/repository/commits`` with ``branch``,
  ``start_branch`` (the base), ``force: true`` (an existing branch is overwritten with a commit
  on the base, like a force push) and one action per file (``create`` or ``update`` as the file
  exists on the base, ``delete``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.sources.files_common import decode_text, default_branch_in, read_each
from repo_updater.sources.gitlab_writes import _project


class GitLabFiles:
    if TYPE_CHECKING:  # provided by GitLabSource and GitLabWrites

        async def _get(
            self, url: str, *, kind: str, **kwargs: Any
        ) -> tuple[Any, httpx.Response]: ...

        async def _write(
            self, method: str, url: str, repo_name: str, *, idempotent: bool = True, **kwargs: Any
        ) -> httpx.Response: ...

    def commit_cost(self, files: Mapping[str, str | None]) -> int:
        return 1

    async def default_branch(self, repo_name: str) -> str:
        data, _ = await self._get(_project(repo_name), kind="get_repo")
        return default_branch_in(data, "default_branch", repo_name, "project")

    async def read_files(
        self, repo_name: str, ref: str, paths: Sequence[str]
    ) -> dict[str, str | None]:
        async def one(path: str) -> str:
            url = f"{_project(repo_name)}/repository/files/{quote(path, safe='')}"
            data, _ = await self._get(url, kind="get_file", params={"ref": ref})
            return decode_text(data.get("content") if isinstance(data, dict) else None, url)

        return await read_each(paths, one)

    async def commit_files(
        self,
        repo_name: str,
        *,
        base: str,
        branch: str,
        files: Mapping[str, str | None],
        message: str,
        existing: Collection[str] = (),
    ) -> None:
        actions: list[dict[str, Any]] = []
        for path, content in sorted(files.items()):
            if content is None:
                actions.append({"action": "delete", "file_path": path})
            else:
                kind = "update" if path in existing else "create"
                actions.append({"action": kind, "file_path": path, "content": content})
        body = {"branch": branch, "start_branch": base, "commit_message": message,
                "actions": actions, "force": True}  # fmt: skip
        # With force and start_branch, a repeated request makes the branch the same again.
        await self._write("POST", f"{_project(repo_name)}/repository/commits", repo_name, json=body)
