"""GitLab's writes (the ``ChangesetWriter`` half of ``GitLabSource``), after GitLab's
``lib/api/merge_requests.rb`` and the notes API (see /work/research/writes/REPORT.md, A.2):

- open: ``POST /projects/:id/merge_requests``; 409 when an open merge request exists for the
  same source AND target branch: that one is returned (looked up by both branches);
- close / reopen: ``PUT /projects/:id/merge_requests/:iid`` with ``state_event``;
- title / description: the same PUT (a draft keeps its ``Draft:`` prefix);
- ready / draft: GitLab has no draft field: a draft is a title that starts with ``Draft:``,
  ``[Draft]`` or ``(Draft)`` (older GitLab also ``WIP:`` and ``[WIP]``); the MR is read and its
  title rewritten;
- merge: ``PUT .../merge`` (``squash`` for a squash merge; rebase is a project setting): 405
  "405 Method Not Allowed" when not mergeable (draft, pipeline, approvals), 422 "Branch cannot
  be merged", 409 SHA mismatch;
- comment: ``POST .../notes``; looked up again in ``GET .../notes`` (newest first).

An archived project refuses writes with a bare ``403 Forbidden``: the project is read again
and, if it is archived, ``RepoArchived`` is raised.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.core.domain import ChangesetSnapshot, HostPullState, NewChangesetSpec
from repo_updater.core.errors import Conflict, Forbidden, Refused, RepoArchived, SourceError
from repo_updater.core.operations import MergeMethod
from repo_updater.sources.common import as_dict, as_list, parse_iso
from repo_updater.sources.http import HostClient

# GitLab's draft title prefixes (``MergeRequest::DRAFT_REGEX``, plus the older WIP forms).
_DRAFT_PREFIX = re.compile(r"^\s*(\[draft\]|\(draft\)|draft:|\[wip\]|wip:)\s*", re.IGNORECASE)
DRAFT_TITLE = "Draft: "
NOTES_PER_PAGE = 100


def _project(name: str) -> str:
    return f"/projects/{quote(name, safe='')}"


def is_draft_title(title: str) -> bool:
    return _DRAFT_PREFIX.match(title) is not None


def strip_draft(title: str) -> str:
    while (match := _DRAFT_PREFIX.match(title)) is not None:
        title = title[match.end() :]
    return title


class GitLabWrites:
    """The writes of ``GitLabSource`` (mixed in; uses its client and ``_get``)."""

    _client: HostClient

    if TYPE_CHECKING:  # provided by RestSource and GitLabSource (declared, not defined here)

        async def _get(
            self, url: str, *, kind: str, **kwargs: Any
        ) -> tuple[Any, httpx.Response]: ...

        def _to_snapshot(self, changeset_id: int, mr: dict[str, Any]) -> ChangesetSnapshot: ...

    async def _write(
        self, method: str, url: str, repo_name: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        try:
            return await self._client.request(
                method, url, kind="write", idempotent=idempotent, wait_rate_limits=False, **kwargs
            )
        except Forbidden as exc:
            if await self._archived(repo_name):
                raise RepoArchived(f"{repo_name} is archived (read-only): {exc}") from None
            raise

    async def _archived(self, repo_name: str) -> bool:
        try:
            data, _ = await self._get(_project(repo_name), kind="get_repo")
        except SourceError:
            return False
        return bool(as_dict(data).get("archived"))

    def _mr_url(self, repo_name: str, number: int) -> str:
        return f"{_project(repo_name)}/merge_requests/{number}"

    async def create_changeset(self, spec: NewChangesetSpec) -> ChangesetSnapshot:
        """Open a merge request; if one is open for the same source and target branch, return
        that one (a retried POST finds it the same way)."""
        title = spec.title
        if spec.draft and not is_draft_title(title):
            title = DRAFT_TITLE + title
        url = f"{_project(spec.repo_name)}/merge_requests"
        body = {
            "source_branch": spec.head_ref,
            "target_branch": spec.base_ref,
            "title": title,
            "description": spec.body,
        }
        try:
            response = await self._write("POST", url, spec.repo_name, json=body)
        except Conflict:
            query = {
                "source_branch": spec.head_ref,
                "target_branch": spec.base_ref,
                "state": "opened",
            }
            data, _ = await self._get(url, kind="get_changeset", params=query)
            same = [
                mr
                for mr in as_list(data)
                if as_dict(mr).get("source_branch") == spec.head_ref
                and as_dict(mr).get("target_branch") == spec.base_ref
            ]
            if not same:
                raise
            return self._to_snapshot(0, as_dict(same[0]))
        return self._to_snapshot(0, as_dict(response.json()))

    async def _put(self, repo_name: str, number: int, body: dict[str, Any]) -> ChangesetSnapshot:
        url = self._mr_url(repo_name, number)
        response = await self._write("PUT", url, repo_name, json=body)
        return self._to_snapshot(0, as_dict(response.json()))

    async def _read(self, repo_name: str, number: int) -> dict[str, Any]:
        data, _ = await self._get(self._mr_url(repo_name, number), kind="get_changeset")
        return as_dict(data)

    async def close_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._put(repo_name, number, {"state_event": "close"})

    async def reopen_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._put(repo_name, number, {"state_event": "reopen"})

    async def update_changeset(
        self, repo_name: str, number: int, *, title: str | None, body: str | None
    ) -> ChangesetSnapshot:
        fields: dict[str, Any] = {}
        if body is not None:
            fields["description"] = body
        if title is not None:
            current = str((await self._read(repo_name, number)).get("title") or "")
            keep_draft = is_draft_title(current) and not is_draft_title(title)
            fields["title"] = DRAFT_TITLE + title if keep_draft else title
        return await self._put(repo_name, number, fields)

    async def mark_ready(self, repo_name: str, number: int) -> ChangesetSnapshot:
        mr = await self._read(repo_name, number)
        title = str(mr.get("title") or "")
        if not is_draft_title(title):
            return self._to_snapshot(0, mr)  # ready already: nothing to write
        return await self._put(repo_name, number, {"title": strip_draft(title)})

    async def convert_to_draft(self, repo_name: str, number: int) -> ChangesetSnapshot:
        mr = await self._read(repo_name, number)
        title = str(mr.get("title") or "")
        if is_draft_title(title):
            return self._to_snapshot(0, mr)
        return await self._put(repo_name, number, {"title": DRAFT_TITLE + title})

    async def merge_changeset(
        self, repo_name: str, number: int, method: MergeMethod
    ) -> ChangesetSnapshot:
        if method is MergeMethod.REBASE:
            raise Refused(
                f"{repo_name}!{number}: GitLab chooses rebase or merge commits per project, "
                "not per merge request"
            )
        url = self._mr_url(repo_name, number) + "/merge"
        body = {"squash": method is MergeMethod.SQUASH}
        response = await self._write("PUT", url, repo_name, idempotent=False, json=body)
        snapshot = self._to_snapshot(0, as_dict(response.json()))
        if snapshot.state is not HostPullState.MERGED:  # e.g. merge when the pipeline succeeds
            raise Refused(f"PUT {url}: GitLab did not merge it (state {snapshot.state.value})")
        return snapshot

    async def add_comment(self, repo_name: str, number: int, body: str) -> None:
        url = self._mr_url(repo_name, number) + "/notes"
        await self._write("POST", url, repo_name, idempotent=False, json={"body": body})

    async def has_comment(self, repo_name: str, number: int, body: str, since: datetime) -> bool:
        url = self._mr_url(repo_name, number) + "/notes"
        params = {"sort": "desc", "order_by": "created_at", "per_page": str(NOTES_PER_PAGE)}
        data, _ = await self._get(url, kind="find_comment", params=params)
        for note in as_list(data):
            n = as_dict(note)
            created = parse_iso(n.get("created_at"))
            if created is not None and created < since:
                return False  # newest first: the rest is older still
            if n.get("body") == body and not n.get("system"):
                return True
        return False
