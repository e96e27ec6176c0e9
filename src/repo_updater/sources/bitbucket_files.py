"""Bitbucket Server / Data Center file reads and commits (the ``FileWriter`` half of
``BitbucketServerSource``), through the REST 1.0 file edit API:

- default branch: ``GET .../repos/{slug}/default-branch``; a file: ``GET
  .../repos/{slug}/raw/{path}?at=refs/heads/{ref}`` (text; 404: no such file);
- commits: ``PUT .../repos/{slug}/browse/{path}`` (multipart ``content``, ``message``,
  ``branch``, ``sourceCommitId``, ``sourceBranch``). That API edits ONE file per request and
  makes one commit for it: a spec that changes several files makes as many commits on the
  branch (the first creates the branch from the base with ``sourceBranch``), not one. It has
  no force and cannot delete a file: a re-apply with changed content adds commits on top of
  the branch that set the files to the wanted content, and a ``delete`` change is refused
  (``Refused``) on this host.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.core.errors import Refused
from repo_updater.sources.common import as_dict, as_list
from repo_updater.sources.files_common import default_branch_in, read_each
from repo_updater.sources.http import HostClient


def _repo(full_name: str) -> str:
    key, _, slug = full_name.partition("/")
    return f"/projects/{quote(key, safe='')}/repos/{quote(slug, safe='')}"


class BitbucketFiles:
    _client: HostClient

    if TYPE_CHECKING:  # provided by RestSource and BitbucketWrites

        async def _get(
            self, url: str, *, kind: str, **kwargs: Any
        ) -> tuple[Any, httpx.Response]: ...

        async def _send(
            self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any
        ) -> httpx.Response: ...

    def commit_cost(self, files: Mapping[str, str | None]) -> int:
        return max(1, len(files))  # one request (and commit) per file

    async def default_branch(self, repo_name: str) -> str:
        data, _ = await self._get(f"{_repo(repo_name)}/default-branch", kind="get_repo")
        return default_branch_in(data, "displayId", repo_name)

    async def read_files(
        self, repo_name: str, ref: str, paths: Sequence[str]
    ) -> dict[str, str | None]:
        async def one(path: str) -> str:
            url = f"{_repo(repo_name)}/raw/{quote(path)}"
            at = {"at": f"refs/heads/{ref}"}
            return (await self._client.request("GET", url, kind="get_file", params=at)).text

        return await read_each(paths, one)

    async def _head(self, repo_name: str, branch: str) -> str | None:
        """The branch's latest commit; None: no such branch."""
        url = f"{_repo(repo_name)}/branches"
        data, _ = await self._get(url, kind="get_branch", params={"filterText": branch})
        for value in as_list(as_dict(data).get("values")):
            if as_dict(value).get("displayId") == branch:
                return str(as_dict(value).get("latestCommit"))
        return None

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
        deleted = sorted(p for p, c in files.items() if c is None)
        if deleted:
            raise Refused(
                f"{repo_name}: Bitbucket Server's file edit API cannot delete files "
                f"({', '.join(deleted)})"
            )
        head = await self._head(repo_name, branch)
        source = branch if head is not None else base
        if head is None:
            head = await self._head(repo_name, base)
        on_branch = await self.read_files(repo_name, source, sorted(files))
        for path, content in sorted(files.items()):
            assert content is not None
            if on_branch.get(path) == content:  # there already (an interrupted attempt)
                continue
            form: dict[str, str] = {"message": message, "branch": branch}
            if on_branch.get(path) is not None and head is not None:
                form["sourceCommitId"] = head
            if source != branch:
                form["sourceBranch"] = f"refs/heads/{base}"
            url = f"{_repo(repo_name)}/browse/{quote(path)}"
            response = await self._send(
                "PUT", url, data=form, files={"content": (path.rpartition("/")[2], content)}
            )
            head = str(as_dict(response.json()).get("id") or head)
            source = branch  # the branch exists from the first edit on
