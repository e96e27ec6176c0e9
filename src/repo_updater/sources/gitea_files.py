"""Gitea's file reads and commits (the ``FileWriter`` half of ``GiteaSource``), through its
multi-file contents API:

- default branch: ``GET /repos/{o}/{r}``; a file: ``GET /repos/{o}/{r}/contents/{path}?ref=``
  (base64, with its blob ``sha``; 404: no such file);
- ONE commit: ``POST /repos/{o}/{r}/contents`` with ``files`` (create / update / delete, each
  update and delete with the ``sha`` of the file it replaces). A new branch is made with
  ``new_branch`` from the base. Gitea's API has no force: when the branch exists (a re-apply
  with changed content), the commit goes on top of it and sets the files to the wanted
  content, so the branch's tree is what a force update would give, with one more commit in
  its history (``GET /repos/{o}/{r}/branches/{branch}`` tells which case it is).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.core.errors import HostError, NotFound
from repo_updater.sources.files_common import decode_text, default_branch_in, read_each
from repo_updater.sources.gitea_writes import _repo


class GiteaFiles:
    if TYPE_CHECKING:  # provided by GiteaSource and GiteaWrites

        async def _get(
            self, url: str, *, kind: str, **kwargs: Any
        ) -> tuple[Any, httpx.Response]: ...

        async def _write(
            self, method: str, url: str, repo_name: str, *, idempotent: bool = True, **kwargs: Any
        ) -> httpx.Response: ...

    def commit_cost(self, files: Mapping[str, str | None]) -> int:
        return 1

    async def default_branch(self, repo_name: str) -> str:
        data, _ = await self._get(_repo(repo_name), kind="get_repo")
        return default_branch_in(data, "default_branch", repo_name)

    async def _files(
        self, repo_name: str, ref: str, paths: Sequence[str]
    ) -> dict[str, tuple[str, str] | None]:
        """path -> (content, blob sha), None: no such file."""

        async def one(path: str) -> tuple[str, str]:
            url = f"{_repo(repo_name)}/contents/{quote(path)}"
            data, _ = await self._get(url, kind="get_file", params={"ref": ref})
            if not isinstance(data, dict) or not isinstance(data.get("sha"), str):
                raise HostError(f"GET {url}: not a file")
            return decode_text(data.get("content"), url), data["sha"]

        return await read_each(paths, one)

    async def read_files(
        self, repo_name: str, ref: str, paths: Sequence[str]
    ) -> dict[str, str | None]:
        found = await self._files(repo_name, ref, paths)
        return {path: None if got is None else got[0] for path, got in found.items()}

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
        try:
            await self._get(f"{_repo(repo_name)}/branches/{quote(branch)}", kind="get_branch")
            on = branch  # a re-apply: on top of the branch
        except NotFound:
            on = base
        found = await self._files(repo_name, on, sorted(files))
        ops: list[dict[str, Any]] = []
        for path, content in sorted(files.items()):
            got = found.get(path)
            if content is None:
                if got is not None:
                    ops.append({"operation": "delete", "path": path, "sha": got[1]})
                continue
            if got is not None and got[0] == content:
                continue
            encoded = base64.b64encode(content.encode()).decode()
            op: dict[str, Any] = {"operation": "create", "path": path, "content": encoded}
            if got is not None:
                op |= {"operation": "update", "sha": got[1]}
            ops.append(op)
        body: dict[str, Any] = {"branch": on, "message": message, "files": ops}
        if on != branch:
            body["new_branch"] = branch
        if not ops:  # the branch holds the wanted files already (an interrupted attempt)
            return
        await self._write("POST", f"{_repo(repo_name)}/contents", repo_name, json=body)
