"""Gitea's writes (the ``ChangesetWriter`` half of ``GiteaSource``), after Gitea's
``routers/api/v1/repo/pull.go`` and its swagger (see /work/research/writes/REPORT.md, A.3):

- open: ``POST /repos/{o}/{r}/pulls``; 409 when one is open for the same head and base: that
  one is returned (``GET /pulls/{base}/{head}``);
- close / reopen / title and body: ``PATCH /repos/{o}/{r}/pulls/{index}`` (answers 201);
- ready / draft: a draft is a title starting with a ``WORK_IN_PROGRESS_PREFIXES`` entry
  (default ``WIP:`` and ``[WIP]``): the pull request is read and its title rewritten;
- merge: ``POST .../pulls/{index}/merge`` with ``Do`` = merge, squash or rebase (405 not
  mergeable or work in progress, 409 conflicts or head out of date);
- comment: ``POST /repos/{o}/{r}/issues/{index}/comments``; looked up again with
  ``GET .../comments?since=``.

Archived repositories: Gitea 1.21 and later refuse guarded writes (create, merge, comment)
with ``423 Locked``; before 1.21 the same guard answered ``404``, so a 404 on a write reads the
repository and raises ``RepoArchived`` if it is archived. ``PATCH`` on a pull request is not
guarded: it succeeds on an archived repository.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.core.domain import ChangesetSnapshot, HostPullState, NewChangesetSpec
from repo_updater.core.errors import Conflict, HostError, NotFound, RepoArchived, SourceError
from repo_updater.core.operations import MergeMethod
from repo_updater.sources.common import as_dict, as_list
from repo_updater.sources.http import HostClient

WIP_PREFIXES = ("wip:", "[wip]")
WIP_TITLE = "WIP: "
_DO = {MergeMethod.MERGE: "merge", MergeMethod.SQUASH: "squash", MergeMethod.REBASE: "rebase"}


def _repo(full_name: str) -> str:
    owner, _, name = full_name.partition("/")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


def is_wip_title(title: str) -> bool:
    return title.lstrip().lower().startswith(WIP_PREFIXES)


def strip_wip(title: str) -> str:
    while is_wip_title(title):
        stripped = title.lstrip()
        prefix = next(p for p in WIP_PREFIXES if stripped.lower().startswith(p))
        title = stripped[len(prefix) :].lstrip()
    return title


class GiteaWrites:
    """The writes of ``GiteaSource`` (mixed in; uses its client, ``_get``, ``_to_snapshot``)."""

    _client: HostClient

    if TYPE_CHECKING:  # provided by RestSource and GiteaSource (declared, not defined here)

        async def _get(
            self, url: str, *, kind: str, **kwargs: Any
        ) -> tuple[Any, httpx.Response]: ...

        def _to_snapshot(self, changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot: ...

    async def _write(
        self, method: str, url: str, repo_name: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method, url, kind="write", idempotent=idempotent, wait_rate_limits=False, **kwargs
            )
        except NotFound as exc:
            # Gitea before 1.21 answers a write to an archived repository with 404.
            if await self._archived(repo_name):
                raise RepoArchived(f"{repo_name} is archived (read-only): {exc}") from None
            raise

    async def _archived(self, repo_name: str) -> bool:
        try:
            data, _ = await self._get(_repo(repo_name), kind="get_repo")
        except SourceError:
            return False
        return bool(as_dict(data).get("archived"))

    async def create_changeset(self, spec: NewChangesetSpec) -> ChangesetSnapshot:
        """Open a pull request; if one is already open for head and base, return that one."""
        title = spec.title
        if spec.draft and not is_wip_title(title):
            title = WIP_TITLE + title
        body = {"head": spec.head_ref, "base": spec.base_ref, "title": title, "body": spec.body}
        path = _repo(spec.repo_name)
        try:
            response = await self._write("POST", path + "/pulls", spec.repo_name, json=body)
        except Conflict:
            existing = (
                f"{path}/pulls/{quote(spec.base_ref, safe='')}/{quote(spec.head_ref, safe='')}"
            )
            data, _ = await self._get(existing, kind="get_changeset")
            return self._to_snapshot(0, as_dict(data))
        return self._to_snapshot(0, as_dict(response.json()))

    async def _patch(self, repo_name: str, number: int, body: dict[str, Any]) -> ChangesetSnapshot:
        url = f"{_repo(repo_name)}/pulls/{number}"
        response = await self._write("PATCH", url, repo_name, json=body)
        return self._to_snapshot(0, as_dict(response.json()))

    async def _read(self, repo_name: str, number: int) -> dict[str, Any]:
        data, _ = await self._get(f"{_repo(repo_name)}/pulls/{number}", kind="get_changeset")
        return as_dict(data)

    async def close_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._patch(repo_name, number, {"state": "closed"})

    async def reopen_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._patch(repo_name, number, {"state": "open"})

    async def update_changeset(
        self, repo_name: str, number: int, *, title: str | None, body: str | None
    ) -> ChangesetSnapshot:
        fields: dict[str, Any] = {}
        if body is not None:
            fields["body"] = body
        if title is not None:
            current = str((await self._read(repo_name, number)).get("title") or "")
            keep_wip = is_wip_title(current) and not is_wip_title(title)
            fields["title"] = WIP_TITLE + title if keep_wip else title
        return await self._patch(repo_name, number, fields)

    async def mark_ready(self, repo_name: str, number: int) -> ChangesetSnapshot:
        pull = await self._read(repo_name, number)
        title = str(pull.get("title") or "")
        if not is_wip_title(title):
            return self._to_snapshot(0, pull)
        return await self._patch(repo_name, number, {"title": strip_wip(title)})

    async def convert_to_draft(self, repo_name: str, number: int) -> ChangesetSnapshot:
        pull = await self._read(repo_name, number)
        title = str(pull.get("title") or "")
        if is_wip_title(title):
            return self._to_snapshot(0, pull)
        return await self._patch(repo_name, number, {"title": WIP_TITLE + title})

    async def merge_changeset(
        self, repo_name: str, number: int, method: MergeMethod
    ) -> ChangesetSnapshot:
        url = f"{_repo(repo_name)}/pulls/{number}/merge"
        await self._write("POST", url, repo_name, idempotent=False, json={"Do": _DO[method]})
        return ChangesetSnapshot(changeset_id=0, number=number, state=HostPullState.MERGED)

    async def add_comment(self, repo_name: str, number: int, body: str) -> None:
        url = f"{_repo(repo_name)}/issues/{number}/comments"
        await self._write("POST", url, repo_name, idempotent=False, json={"body": body})

    async def has_comment(self, repo_name: str, number: int, body: str, since: datetime) -> bool:
        url = f"{_repo(repo_name)}/issues/{number}/comments"
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data, _ = await self._get(url, kind="find_comment", params={"since": stamp})
        if not isinstance(data, list):
            raise HostError(f"GET {url}: expected a list of comments")
        return any(as_dict(c).get("body") == body for c in as_list(data))
