"""GitHub's writes (the ``ChangesetWriter`` half of ``GitHubSource``), after GitHub's REST
OpenAPI description and GraphQL schema (see /work/research/writes/REPORT.md, A.1 and A.5):

- open: ``POST /repos/{o}/{r}/pulls`` (422 "A pull request already exists for ..." -> the open
  one; 422 "Draft pull requests are not supported in this repository." -> opened ready for
  review instead, said in a warning and a ``draft_unsupported`` timeline event);
- close / reopen / title and body: ``PATCH /repos/{o}/{r}/pulls/{n}`` (REST has no draft field);
- merge: ``PUT /repos/{o}/{r}/pulls/{n}/merge`` with ``merge_method`` (405 not mergeable, 409
  head modified);
- comment: ``POST /repos/{o}/{r}/issues/{n}/comments``; looked up again with
  ``GET .../comments?since=``;
- ready / draft: GraphQL ``markPullRequestReadyForReview`` / ``convertPullRequestToDraft``
  (after a query for the pull request's node id), at ``GitHubSource.graphql_url`` (GitHub
  Enterprise Server: ``/api/graphql``). A mutation on an archived repository answers 200 with an
  ``UNPROCESSABLE`` error "Repository was archived so is read-only.". Both spend the source's
  GraphQL budget (``github_ratelimit``): they wait for the reset when it is used up, and a rate
  limit answered with HTTP 200 is ``RateLimited``, as for the changeset loads.

REST refusals on an archived repository are ``403 Repository was archived so is read-only.``
(``GitHubSource._classify`` maps them to ``RepoArchived``).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from repo_updater.core.domain import (
    ChangesetEvent,
    ChangesetSnapshot,
    HostPullState,
    NewChangesetSpec,
)
from repo_updater.core.errors import (
    HostError,
    NotFound,
    RateLimited,
    Refused,
    RepoArchived,
    SourceError,
    Unauthorized,
)
from repo_updater.core.operations import MergeMethod
from repo_updater.sources.github_ratelimit import GraphQLBudget, rate_limit_error
from repo_updater.sources.http import HostClient, decode_json, parse_next_link, retry_after_seconds

log = logging.getLogger(__name__)

DRAFTS_UNSUPPORTED = "Draft pull requests are not supported"
_ARCHIVED = "repository was archived"
# The GraphQL documents the writes send (tests/conformance validates them against the written
# excerpt of GitHub's public schema, tests/conformance/specs/github.graphql).
NODE_ID_QUERY = (
    "query($owner: String!, $name: String!, $number: Int!) {"
    " repository(owner: $owner, name: $name) { pullRequest(number: $number) { id } } }"
)
MUTATIONS = ("markPullRequestReadyForReview", "convertPullRequestToDraft")


def mutation_document(mutation: str) -> str:
    """The document of one of ``MUTATIONS``, on the pull request node id ``$id``."""
    return (
        f"mutation($id: ID!) {{ {mutation}(input: {{pullRequestId: $id}}) {{"
        " pullRequest { number state isDraft title } } }"
    )


MAX_COMMENT_PAGES = 5  # 500 comments since the attempt began: more would be a strange PR


class PullRequestExists(SourceError):
    """422: an open pull request for this head branch already exists."""


class DraftsUnsupported(Refused):
    """422: the repository's plan has no draft pull requests."""


def classify_422(where: str, message: str, response: httpx.Response) -> SourceError:
    """GitHub's 422 "Validation Failed", with the reason from its ``errors`` list (where
    GitHub puts what went wrong)."""
    details = errors_text(response)
    if "already exists" in details:
        return PullRequestExists(f"{where}: a pull request already exists")
    if DRAFTS_UNSUPPORTED in details or DRAFTS_UNSUPPORTED in message:
        return DraftsUnsupported(f"{where}: {DRAFTS_UNSUPPORTED} in this repository")
    reasons = [
        str(e.get("message") or e.get("code") or "")
        for e in _list(_json(response).get("errors"))
        if isinstance(e, dict)
    ]
    detail = "; ".join(r for r in reasons if r)
    return Refused(f"{where}: 422 {message}" + (f": {detail}" if detail else ""))


def _repo(repo_name: str) -> str:
    return f"/repos/{quote(repo_name, safe='/')}"


class GitHubWrites:
    """The writes of ``GitHubSource`` (mixed in; uses its ``client``)."""

    host_url: str
    graphql_url: str
    budget: GraphQLBudget

    if TYPE_CHECKING:  # provided by GitHubSource (declared, not defined here)

        @property
        def client(self) -> HostClient: ...

    async def _write(
        self, method: str, url: str, *, kind: str, idempotent: bool, body: dict[str, Any]
    ) -> httpx.Response:
        return await self.client.request(
            method, url, kind=kind, idempotent=idempotent, wait_rate_limits=False, json=body
        )

    async def create_changeset(self, spec: NewChangesetSpec) -> ChangesetSnapshot:
        """Open a pull request (or return the open one for the same head branch). A second
        POST after a lost answer finds the first pull request, so retrying is safe."""
        url = f"{_repo(spec.repo_name)}/pulls"
        payload: dict[str, Any] = {
            "title": spec.title,
            "body": spec.body,
            "head": spec.head_ref,
            "base": spec.base_ref,
            "draft": spec.draft,
        }
        events: tuple[ChangesetEvent, ...] = ()
        try:
            try:
                response = await self._write(
                    "POST", url, kind="create_pr", idempotent=True, body=payload
                )
            except DraftsUnsupported:
                if not spec.draft:
                    raise
                # Drafts need a paid plan on private repositories: open it ready for review,
                # and say so (a warning, and an event on the changeset's timeline).
                log.warning(
                    "%s: drafts are not supported in %s; opened the pull request as ready for "
                    "review", self.host_url, spec.repo_name,
                )  # fmt: skip
                events = (
                    ChangesetEvent(
                        kind="draft_unsupported",
                        at=datetime.now(UTC),
                        detail="the repository does not support drafts: opened as ready",
                    ),
                )
                payload["draft"] = False
                response = await self._write(
                    "POST", url, kind="create_pr", idempotent=True, body=payload
                )
        except PullRequestExists:
            owner = spec.repo_name.partition("/")[0]
            existing, _ = await self.client.get_json(
                url, kind="find_pr", params={"head": f"{owner}:{spec.head_ref}", "state": "open"}
            )
            if not isinstance(existing, list) or not existing:
                raise HostError(f"POST {url}: pull request exists but was not found") from None
            return snapshot_from_rest(existing[0])
        snapshot = snapshot_from_rest(decode_json(response, url))
        if events:
            return ChangesetSnapshot(**{**_fields(snapshot), "events": events})
        return snapshot

    async def _patch(self, repo_name: str, number: int, body: dict[str, Any]) -> ChangesetSnapshot:
        url = f"{_repo(repo_name)}/pulls/{number}"
        response = await self._write("PATCH", url, kind="update_pr", idempotent=True, body=body)
        return snapshot_from_rest(decode_json(response, url))

    async def close_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._patch(repo_name, number, {"state": "closed"})

    async def reopen_changeset(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._patch(repo_name, number, {"state": "open"})

    async def update_changeset(
        self, repo_name: str, number: int, *, title: str | None, body: str | None
    ) -> ChangesetSnapshot:
        fields = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
        return await self._patch(repo_name, number, fields)

    async def merge_changeset(
        self, repo_name: str, number: int, method: MergeMethod
    ) -> ChangesetSnapshot:
        url = f"{_repo(repo_name)}/pulls/{number}/merge"
        response = await self._write(
            "PUT", url, kind="merge_pr", idempotent=False, body={"merge_method": method.value}
        )
        answer = decode_json(response, url)
        if not isinstance(answer, dict) or answer.get("merged") is not True:
            raise HostError(f"PUT {url}: the answer does not say the pull request was merged")
        return ChangesetSnapshot(changeset_id=0, number=number, state=HostPullState.MERGED)

    async def add_comment(self, repo_name: str, number: int, body: str) -> None:
        url = f"{_repo(repo_name)}/issues/{number}/comments"
        await self._write("POST", url, kind="comment", idempotent=False, body={"body": body})

    async def has_comment(self, repo_name: str, number: int, body: str, since: datetime) -> bool:
        url: str | None = f"{_repo(repo_name)}/issues/{number}/comments"
        stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        params: dict[str, str] | None = {"since": stamp, "per_page": "100"}
        for _ in range(MAX_COMMENT_PAGES):
            if url is None:
                return False
            data, response = await self.client.get_json(url, kind="find_comment", params=params)
            if any(isinstance(c, dict) and c.get("body") == body for c in _list(data)):
                return True
            url, params = parse_next_link(response.headers), None
        return False

    async def mark_ready(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._mutate(repo_name, number, "markPullRequestReadyForReview")

    async def convert_to_draft(self, repo_name: str, number: int) -> ChangesetSnapshot:
        return await self._mutate(repo_name, number, "convertPullRequestToDraft")

    async def _mutate(self, repo_name: str, number: int, mutation: str) -> ChangesetSnapshot:
        owner, _, name = repo_name.partition("/")
        variables = {"owner": owner, "name": name, "number": number}
        data = await self._graphql(NODE_ID_QUERY, variables, kind="find_pr", mutation=False)
        pull = ((data.get("repository") or {}).get("pullRequest")) or {}
        node_id = pull.get("id") if isinstance(pull, dict) else None
        if not isinstance(node_id, str):
            raise NotFound(f"{self.graphql_url}: no pull request #{number} in {repo_name}")
        data = await self._graphql(
            mutation_document(mutation), {"id": node_id}, kind=mutation, mutation=True
        )
        result = (data.get(mutation) or {}).get("pullRequest")
        if not isinstance(result, dict):
            raise HostError(f"{self.graphql_url}: {mutation} returned no pull request")
        state = HostPullState.DRAFT if result.get("isDraft") else HostPullState.OPEN
        if result.get("state") in ("CLOSED", "MERGED"):
            state = HostPullState(str(result["state"]))
        return ChangesetSnapshot(
            changeset_id=0, number=number, state=state, title=str(result.get("title") or "")
        )

    async def _graphql(
        self, query: str, variables: dict[str, Any], *, kind: str, mutation: bool
    ) -> dict[str, Any]:
        where = self.graphql_url
        wait = self.budget.wait_before_query(time.time())
        if wait is not None:
            raise RateLimited(
                f"{where}: GraphQL rate limit nearly used up "
                f"({self.budget.remaining} points left); waiting for the reset",
                wait,
            )
        # A query (the node id lookup) reads only: a lost or truncated answer is asked again.
        # A mutation is not repeated once it may have reached the host (see HostClient).
        body, response = await self.client.request_json(
            "POST",
            where,
            kind=kind,
            idempotent=not mutation,
            retry_invalid=not mutation,
            wait_rate_limits=False,
            json={"query": query, "variables": variables},
        )
        if not isinstance(body, dict):
            raise HostError(f"{where}: malformed response")
        limited = rate_limit_error(body, response.headers, time.time())
        if limited is not None:
            text, wait = limited
            self.budget.exhausted(time.time() + wait)
            raise RateLimited(f"{where}: {self.client.redact(text)}", wait)
        data = body.get("data")
        self.budget.update(data, response.headers, time.time())
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            raise self._graphql_error(errors[0], response)
        if not isinstance(data, dict):
            raise HostError(f"{where}: response without data")
        return data

    def _graphql_error(self, error: Any, response: httpx.Response) -> SourceError:
        """A GraphQL error as one of ours (GraphQL answers 200 even for refusals)."""
        error = error if isinstance(error, dict) else {"message": str(error)}
        message = self.client.redact(str(error.get("message", "")))[:300]
        kind = error.get("type")
        where = self.graphql_url
        if kind in ("RATE_LIMITED", "RATE_LIMIT") or "rate limit" in message.lower():
            return RateLimited(f"{where}: {message}", retry_after_seconds(response.headers))
        if _ARCHIVED in message.lower():
            return RepoArchived(f"{where}: {message}")
        if kind == "NOT_FOUND":
            return NotFound(f"{where}: {message}")
        if kind == "FORBIDDEN":
            return Unauthorized(f"{where}: forbidden: {message}")
        return Refused(f"{where}: {kind or 'error'}: {message}")


def _list(data: Any) -> list[Any]:
    return data if isinstance(data, list) else []


def _fields(snapshot: ChangesetSnapshot) -> dict[str, Any]:
    return {name: getattr(snapshot, name) for name in snapshot.__slots__}


def snapshot_from_rest(raw: Any) -> ChangesetSnapshot:
    """A pull request as GitHub's REST API answers it (after a write)."""
    if not isinstance(raw, dict):
        raise HostError("malformed pull request in response")
    try:
        if raw.get("merged_at") or raw.get("merged"):
            state = HostPullState.MERGED
        elif raw["state"] == "closed":
            state = HostPullState.CLOSED
        elif raw.get("draft"):
            state = HostPullState.DRAFT
        else:
            state = HostPullState.OPEN
        updated = raw.get("updated_at")
        return ChangesetSnapshot(
            changeset_id=0,
            number=int(raw["number"]),
            state=state,
            title=str(raw.get("title", "")),
            url=str(raw.get("html_url", "")),
            # ``GET /pulls`` answers the "simple" schema, without diff stats: unknown, not 0.
            additions=_optional_int(raw.get("additions")),
            deletions=_optional_int(raw.get("deletions")),
            head_ref=str((raw.get("head") or {}).get("ref", "")),
            base_ref=str((raw.get("base") or {}).get("ref", "")),
            updated_at=datetime.fromisoformat(updated) if updated else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise HostError(f"malformed pull request in response: {error!r}") from None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def errors_text(response: httpx.Response) -> str:
    """The ``errors`` of a GitHub validation failure, as text (to recognise one)."""
    return json.dumps(_json(response).get("errors", ""))
