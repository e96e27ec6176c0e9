"""GitHub's file reads and commits (the ``FileWriter`` half of ``GitHubSource``), through the
REST contents and Git Data APIs, with no checkout:

- default branch: ``GET /repos/{o}/{r}``; a file: ``GET /repos/{o}/{r}/contents/{path}?ref=``
  (base64; 404: no such file);
- one commit: ``GET /repos/{o}/{r}/branches/{base}`` (its head commit and tree), ``POST
  git/trees`` with ``base_tree`` and the changed entries inline (``content``, or ``sha: null``
  to delete: no separate blob requests), ``POST git/commits`` with the base commit as parent,
  then ``POST git/refs`` for a new branch, or ``PATCH git/refs/heads/{branch}`` with
  ``force: true`` when it exists (422 "Reference already exists").

Four writes per commit at most (tree, commit, ref, and a PATCH when the branch exists).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from repo_updater.core.errors import HostError, Refused
from repo_updater.sources.files_common import decode_text, default_branch_in, read_each
from repo_updater.sources.http import HostClient, decode_json


def _repo(repo_name: str) -> str:
    return f"/repos/{quote(repo_name, safe='/')}"


class GitHubFiles:
    if TYPE_CHECKING:  # provided by GitHubSource

        @property
        def client(self) -> HostClient: ...

    def commit_cost(self, files: Mapping[str, str | None]) -> int:
        return 4  # tree, commit, ref (and a PATCH when the branch exists)

    async def default_branch(self, repo_name: str) -> str:
        data, _ = await self.client.get_json(_repo(repo_name), kind="get_repo")
        return default_branch_in(data, "default_branch", repo_name)

    async def read_files(
        self, repo_name: str, ref: str, paths: Sequence[str]
    ) -> dict[str, str | None]:
        async def one(path: str) -> str:
            url = f"{_repo(repo_name)}/contents/{quote(path)}"
            data, _ = await self.client.get_json(url, kind="get_file", params={"ref": ref})
            return _decode(data, url)

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
        root = _repo(repo_name)
        head, _ = await self.client.get_json(f"{root}/branches/{quote(base)}", kind="get_branch")
        try:
            parent = str(head["commit"]["sha"])
            base_tree = str(head["commit"]["commit"]["tree"]["sha"])
        except (KeyError, TypeError):
            raise HostError(f"{root}/branches/{base}: malformed branch") from None
        entries: list[dict[str, Any]] = []
        for path, content in sorted(files.items()):
            entry: dict[str, Any] = {"path": path, "mode": "100644", "type": "blob"}
            entry |= {"sha": None} if content is None else {"content": content}
            entries.append(entry)
        tree = await self._post(
            f"{root}/git/trees", "create_tree", {"base_tree": base_tree, "tree": entries}
        )
        commit = await self._post(
            f"{root}/git/commits",
            "create_commit",
            {"message": message, "tree": tree["sha"], "parents": [parent]},
        )
        sha = commit["sha"]
        try:
            await self.client.request(
                "POST",
                f"{root}/git/refs",
                kind="create_ref",
                idempotent=True,
                wait_rate_limits=False,
                json={"ref": f"refs/heads/{branch}", "sha": sha},
            )
        except Refused as exc:
            if "already exists" not in str(exc):
                raise
            url = f"{root}/git/refs/heads/{quote(branch)}"
            await self.client.request(
                "PATCH",
                url,
                kind="update_ref",
                idempotent=True,
                wait_rate_limits=False,
                json={"sha": sha, "force": True},
            )

    async def _post(self, url: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        # Trees and commits are content-addressed: sending one again makes the same object.
        response = await self.client.request(
            "POST", url, kind=kind, idempotent=True, wait_rate_limits=False, json=body
        )
        data = decode_json(response, url, "POST")
        if not isinstance(data, dict) or not isinstance(data.get("sha"), str):
            raise HostError(f"POST {url}: answer without a sha")
        return data


def _decode(data: Any, url: str) -> str:
    if not isinstance(data, dict) or data.get("type") != "file":
        raise HostError(f"GET {url}: not a file")
    return decode_text(data.get("content", ""), url)
