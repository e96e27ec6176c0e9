"""Bitbucket Server / Data Center writes (the ``ChangesetWriter`` half of
``BitbucketServerSource``), after the Bitbucket Data Center REST OpenAPI description (9.2) and
Sourcegraph's client (see /work/research/writes/REPORT.md, A.4):

- every write to a pull request names the ``version`` it was made against (optimistic
  locking): the pull request is read first, and a ``409`` ``PullRequestOutOfDateException``
  (someone changed it meanwhile) is retried once against the version the error carries (or a
  fresh read when it carries none);
- decline / reopen / merge: ``POST .../pull-requests/{id}/{decline,reopen,merge}?version=N``
  (merge ``strategyId``: ``no-ff``, ``squash`` or ``rebase-no-ff``);
- title, description, draft (8.18+): ``PUT .../pull-requests/{id}``, a full replace, so the
  current reviewers and target ref are sent back (or they would be cleared);
- comment: ``POST .../pull-requests/{id}/comments`` ``{"text"}``; looked up again in
  ``GET .../activities`` (newest first).

An archived repository (Bitbucket 8.0+) refuses writes with ``409`` and
``RepositoryArchivedException`` (comments: "Adding, deleting, or editing comments isn't
supported on archived repositories.") -> ``RepoArchived``. A merge vetoed by conflicts or merge
checks is ``409`` ``PullRequestMergeVetoedException`` -> ``Refused``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.core.domain import ChangesetSnapshot, HostPullState, NewChangesetSpec
from repo_updater.core.errors import Conflict, Refused, RepoArchived, SourceError
from repo_updater.core.operations import MergeMethod
from repo_updater.sources.common import as_dict, as_list, parse_epoch_ms
from repo_updater.sources.http import HostClient, response_message

_STRATEGY = {
    MergeMethod.MERGE: "no-ff",
    MergeMethod.SQUASH: "squash",
    MergeMethod.REBASE: "rebase-no-ff",
}
_ARCHIVED_EXCEPTION = "RepositoryArchivedException"
_OUT_OF_DATE_EXCEPTION = "PullRequestOutOfDateException"
_VETOED_EXCEPTION = "PullRequestMergeVetoedException"
ACTIVITIES_LIMIT = 100


_Send = Callable[[dict[str, Any]], Awaitable[httpx.Response]]


class OutOfDate(Conflict):
    """409: the pull request changed since the version the write named."""

    def __init__(self, message: str, pull: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.pull = pull  # the current pull request, when the error carries it


def _pulls(full_name: str) -> str:
    key, _, slug = full_name.partition("/")
    return f"/projects/{quote(key, safe='')}/repos/{quote(slug, safe='')}/pull-requests"


def classify_conflict(response: httpx.Response, where: str) -> SourceError | None:
    """What a Bitbucket 409 means, from the ``exceptionName`` of its first error."""
    if response.status_code != 409:
        return None
    try:
        body = json.loads(response.content)
    except ValueError:
        body = {}
    errors = as_list(as_dict(body).get("errors"))
    first = as_dict(errors[0]) if errors else {}
    exception = str(first.get("exceptionName") or "")
    message = response_message(response, limit=300)
    if exception.endswith(_ARCHIVED_EXCEPTION) or "archived repositor" in message.lower():
        return RepoArchived(f"{where}: repository is archived: {message}")
    if exception.endswith(_OUT_OF_DATE_EXCEPTION):
        pull = first.get("pullRequest")
        return OutOfDate(f"{where}: {message}", pull if isinstance(pull, dict) else None)
    if exception.endswith(_VETOED_EXCEPTION):
        return Refused(f"{where}: not mergeable: {message}")
    return None


class BitbucketWrites:
    """The writes of ``BitbucketServerSource`` (mixed in before ``RestSource`` so that its
    ``_classify`` reads Bitbucket's 409s)."""

    _client: HostClient

    if TYPE_CHECKING:  # provided by RestSource and BitbucketServerSource

        async def _get(
            self, url: str, *, kind: str, **kwargs: Any
        ) -> tuple[Any, httpx.Response]: ...

        def _to_snapshot(self, changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot: ...

    def _classify(self, response: httpx.Response) -> SourceError | None:
        request = response.request
        return classify_conflict(
            response, f"{request.method} {self._client.redact(str(request.url))[:300]}"
        )

    async def _send(
        self, method: str, url: str, *, idempotent: bool = True, **kwargs: Any
    ) -> httpx.Response:
        return await self._client.request(
            method, url, kind="write", idempotent=idempotent, wait_rate_limits=False, **kwargs
        )

    async def _read(self, repo_name: str, number: int) -> dict[str, Any]:
        data, _ = await self._get(f"{_pulls(repo_name)}/{number}", kind="get_changeset")
        return as_dict(data)

    async def _versioned(
        self,
        repo_name: str,
        number: int,
        send: _Send,
    ) -> ChangesetSnapshot:
        """Read the pull request, send the write for its version; when someone changed it
        in between, send it once more for the version the 409 names."""
        pull = await self._read(repo_name, number)
        try:
            response = await send(pull)
        except OutOfDate as stale:
            fresh = stale.pull if stale.pull is not None else await self._read(repo_name, number)
            response = await send(fresh)
        return self._to_snapshot(0, as_dict(response.json()))

    async def create_changeset(self, spec: NewChangesetSpec) -> ChangesetSnapshot:
        key, _, slug = spec.repo_name.partition("/")
        repository = {"slug": slug, "project": {"key": key}}
        body = {
            "title": spec.title,
            "description": spec.body,
            "draft": spec.draft,
            "fromRef": {"id": f"refs/heads/{spec.head_ref}", "repository": repository},
            "toRef": {"id": f"refs/heads/{spec.base_ref}", "repository": repository},
        }
        try:
            response = await self._send("POST", _pulls(spec.repo_name), json=body)
        except Conflict as exc:
            existing = await self._find_open(spec)
            if existing is None:
                raise exc from None
            return self._to_snapshot(0, existing)
        return self._to_snapshot(0, as_dict(response.json()))

    async def _find_open(self, spec: NewChangesetSpec) -> dict[str, Any] | None:
        params = {"state": "OPEN", "at": f"refs/heads/{spec.base_ref}", "direction": "OUTGOING"}
        data, _ = await self._get(_pulls(spec.repo_name), kind="get_changeset", params=params)
        for pull in as_list(as_dict(data).get("values")):
            p = as_dict(pull)
            if as_dict(p.get("fromRef")).get("displayId") == spec.head_ref:
                return p
        return None

    def _action(self, repo_name: str, number: int, action: str, **extra: Any) -> _Send:
        url = f"{_pulls(repo_name)}/{number}/{action}"

        async def send(pull: dict[str, Any]) -> httpx.Response:
            version = pull.get("version", 0)
            return await self._send(
                "POST",
                url,
                idempotent=action != "merge",
                params={"version": str(version)},
                json={"version": version, **extra},
            )

        return send

    async def close_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._versioned(repo_name, number, self._action(repo_name, number, "decline"))

    async def reopen_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._versioned(repo_name, number, self._action(repo_name, number, "reopen"))

    async def merge_changeset(
        self, repo_name: str, number: int, method: MergeMethod
    ) -> ChangesetSnapshot:
        send = self._action(repo_name, number, "merge", strategyId=_STRATEGY[method])
        return await self._versioned(repo_name, number, send)

    async def _put(self, repo_name: str, number: int, **changes: Any) -> ChangesetSnapshot:
        url = f"{_pulls(repo_name)}/{number}"

        async def send(pull: dict[str, Any]) -> httpx.Response:
            # PUT replaces the pull request: send back what must not change (reviewers,
            # target) or Bitbucket clears it.
            body = {
                "version": pull.get("version", 0),
                "title": pull.get("title", ""),
                "description": pull.get("description", ""),
                "draft": bool(pull.get("draft")),
                "toRef": {"id": as_dict(pull.get("toRef")).get("id")},
                "reviewers": [
                    {"user": {"name": as_dict(as_dict(r).get("user")).get("name")}}
                    for r in as_list(pull.get("reviewers"))
                ],
                **changes,
            }
            return await self._send("PUT", url, json=body)

        return await self._versioned(repo_name, number, send)

    async def update_changeset(
        self, repo_name: str, number: int, *, title: str | None, body: str | None
    ) -> ChangesetSnapshot:
        changes = {k: v for k, v in (("title", title), ("description", body)) if v is not None}
        return await self._put(repo_name, number, **changes)

    async def mark_ready(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._put(repo_name, number, draft=False)

    async def convert_to_draft(self, repo_name: str, number: int) -> ChangesetSnapshot:
        snapshot = await self._put(repo_name, number, draft=True)
        if snapshot.state is not HostPullState.DRAFT:  # servers before 8.18 ignore ``draft``
            raise Refused(f"{repo_name}#{number}: drafts need Bitbucket 8.18 or later")
        return snapshot

    async def add_comment(self, repo_name: str, number: int, body: str) -> None:
        url = f"{_pulls(repo_name)}/{number}/comments"
        await self._send("POST", url, idempotent=False, json={"text": body})

    async def has_comment(self, repo_name: str, number: int, body: str, since: datetime) -> bool:
        url = f"{_pulls(repo_name)}/{number}/activities"
        params = {"start": "0", "limit": str(ACTIVITIES_LIMIT)}
        data, _ = await self._get(url, kind="find_comment", params=params)
        for activity in as_list(as_dict(data).get("values")):
            a = as_dict(activity)
            created = parse_epoch_ms(a.get("createdDate"))
            if created is not None and created < since:
                return False  # newest first: the rest is older still
            comment = as_dict(a.get("comment"))
            if a.get("action") == "COMMENTED" and comment.get("text") == body:
                return True
        return False
