"""Gitea source (API v1).

Listing: ``GET /orgs/{owner}/repos`` per owner, falling back to ``GET /users/{owner}/repos``
when the org does not exist (50 per page, Gitea's maximum; ``Link: rel="next"``, else
``X-Total-Count``), then ``GET /repos/{owner}/{name}`` per explicit repo.

Changesets, per repo: one ref -> ``GET /pulls/{index}``. Several -> the first page of
``GET /pulls?state=all`` (newest first); if the rest of the listing (``X-Total-Count``) costs
fewer requests than fetching the refs not yet found one by one, the source pages on, else it
GETs them singly. A ref the listing did not show is confirmed with a single GET before it is
reported DELETED (listings shift while paged). So a repo costs ``min(pages, 1 + missing)``
requests. Gitea puts neither reviews nor CI status on a PR, so for each open PR the source
also GETs ``/pulls/{index}/reviews`` (``load_reviews``) and the head commit's combined status
(``load_checks``): +2 requests per open PR when both are on (the default).

Writes are in ``gitea_writes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from repo_updater.core.domain import (
    ChangesetEvent,
    ChangesetSnapshot,
    CheckState,
    HostKind,
    HostPullState,
    ReviewState,
    SourcedRepo,
)
from repo_updater.core.errors import HostError, NotFound
from repo_updater.sources.common import (
    PerRepoPullLoader,
    as_dict,
    as_list,
    list_selection,
    parse_iso,
)
from repo_updater.sources.gitea_writes import GiteaWrites
from repo_updater.sources.http import parse_next_link
from repo_updater.sources.rest import DEFAULT_CONCURRENCY, RestSource, SourceOptions

MAX_LIMIT = 50
WIP_PREFIXES = ("wip:", "[wip]")
_CHECKS = {"success": CheckState.PASSED, "warning": CheckState.PASSED}
_CHECKS |= {"failure": CheckState.FAILED, "error": CheckState.FAILED, "pending": CheckState.PENDING}


def _repo_path(full_name: str) -> str:
    owner, _, name = full_name.partition("/")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


class GiteaSource(GiteaWrites, PerRepoPullLoader, RestSource):
    kind = HostKind.GITEA
    api_suffix = "/api/v1"
    archived_statuses = (423,)  # Locked

    def __init__(
        self,
        *,
        limit: int = MAX_LIMIT,
        load_reviews: bool = True,
        load_checks: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(
            headers={"Accept": "application/json"},
            token_header=("Authorization", "token {}"),
            concurrency=concurrency,
            **options,
        )
        self.limit = max(1, min(MAX_LIMIT, limit))
        self.load_reviews = load_reviews
        self.load_checks = load_checks

    # --- repositories ------------------------------------------------------------------------

    def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        return list_selection(self.selection, self._owner_pages, self._get_repo)

    async def _owner_pages(self, owner: str) -> AsyncIterator[list[SourcedRepo]]:
        try:
            first = await self._page(f"/orgs/{quote(owner, safe='')}/repos", 1)
            base = f"/orgs/{quote(owner, safe='')}/repos"
        except NotFound:  # not an org: a user
            base = f"/users/{quote(owner, safe='')}/repos"
            first = await self._page(base, 1)
        data, response = first
        page = 1
        while True:
            yield [self._repo(r) for r in data]
            # An empty page is not the end: only the absence of both next markers is.
            next_url = parse_next_link(response.headers)
            total = response.headers.get("x-total-count", "").strip()
            if total and not total.isdigit():
                raise HostError(f"GET {base}: malformed X-Total-Count {total[:20]!r}")
            if next_url is None and not (total and page * self.limit < int(total)):
                return
            page += 1
            if next_url is not None:
                data, response = await self._list(next_url, None)
            else:
                data, response = await self._page(base, page)

    async def _page(self, url: str, page: int) -> tuple[list[Any], httpx.Response]:
        return await self._list(url, {"page": str(page), "limit": str(self.limit)})

    async def _list(
        self, url: str, params: dict[str, str] | None, kind: str = "list_repos"
    ) -> tuple[list[Any], httpx.Response]:
        data, response = await self._get(url, kind=kind, params=params)
        if not isinstance(data, list):
            raise HostError(f"GET {url}: expected a list")
        return data, response

    async def _get_repo(self, name: str) -> SourcedRepo:
        data, _ = await self._get(_repo_path(name), kind="get_repo")
        return self._repo(data)

    @staticmethod
    def _repo(repo: Any) -> SourcedRepo:
        r = as_dict(repo)
        if not isinstance(r.get("id"), int) or not isinstance(r.get("full_name"), str):
            raise HostError("malformed Gitea repository: missing id or full_name")
        return SourcedRepo(
            external_id=str(r["id"]),
            name=r["full_name"],
            url=str(r.get("html_url") or ""),
            archived=bool(r.get("archived")),
            fork=bool(r.get("fork")),
            private=bool(r.get("private")) or bool(r.get("internal")),
            description=str(r.get("description") or ""),
        )

    # --- changesets --------------------------------------------------------------------------

    def _to_snapshot(self, changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot:
        return _snapshot(changeset_id, pull)

    async def _list_pulls(
        self, repo_name: str, wanted: set[int], pulls: dict[int, dict[str, Any]]
    ) -> None:
        """Page through the repo's pulls while that is cheaper than single GETs."""
        url = _repo_path(repo_name) + "/pulls"
        page = 1
        while True:
            params = {"state": "all", "page": str(page), "limit": str(MAX_LIMIT)}
            try:
                data, response = await self._list(url, params, kind="load_changesets")
            except NotFound:
                return  # the repo is gone: the single GETs will say so
            for item in data:
                number = as_dict(item).get("number")
                if number in wanted:
                    pulls[number] = item
            total = response.headers.get("x-total-count", "")
            pages_left = -(-int(total) // MAX_LIMIT) - page if total.isdigit() else 0
            if not data or pages_left <= 0 or pages_left >= len(wanted - pulls.keys()):
                return
            page += 1

    async def _get_pull(self, repo_name: str, number: int) -> dict[str, Any] | None:
        try:
            data, _ = await self._get(
                f"{_repo_path(repo_name)}/pulls/{number}", kind="load_changeset"
            )
        except NotFound:
            return None
        return as_dict(data)

    async def _complete(self, repo_name: str, pull: dict[str, Any]) -> None:
        """Add reviews and the combined CI status to an open PR, in place."""
        if pull.get("state") != "open":
            return
        base = _repo_path(repo_name)
        if self.load_reviews:
            reviews, _ = await self._get(
                f"{base}/pulls/{pull.get('number')}/reviews", kind="load_reviews"
            )
            pull["_reviews"] = as_list(reviews)
        sha = as_dict(pull.get("head")).get("sha")
        if self.load_checks and isinstance(sha, str) and sha:
            status, _ = await self._get(f"{base}/commits/{quote(sha)}/status", kind="load_checks")
            pull["_checks"] = as_dict(status).get("state")


def _review_state(reviews: list[Any]) -> ReviewState:
    latest: dict[str, str] = {}  # each reviewer's last verdict counts
    for review in reviews:
        r = as_dict(review)
        state = str(r.get("state", ""))
        if r.get("dismissed") or state in ("PENDING", "REQUEST_REVIEW", ""):
            continue
        latest[str(as_dict(r.get("user")).get("login", ""))] = state
    verdicts = set(latest.values())
    if "REQUEST_CHANGES" in verdicts:
        return ReviewState.CHANGES_REQUESTED
    if "APPROVED" in verdicts:
        return ReviewState.APPROVED
    if "COMMENT" in verdicts:
        return ReviewState.COMMENTED
    return ReviewState.PENDING


def _snapshot(changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot:
    number = pull.get("number")
    if not isinstance(number, int):
        raise HostError("malformed Gitea pull request: missing number")
    title = str(pull.get("title") or "")
    merged_at, closed_at = parse_iso(pull.get("merged_at")), parse_iso(pull.get("closed_at"))
    events: tuple[ChangesetEvent, ...] = ()
    if pull.get("merged"):
        state = HostPullState.MERGED
        events = (ChangesetEvent(kind="merged", at=merged_at),) if merged_at else ()
    elif pull.get("state") == "closed":
        state = HostPullState.CLOSED
        events = (ChangesetEvent(kind="closed", at=closed_at),) if closed_at else ()
    elif pull.get("draft") or title.lower().startswith(WIP_PREFIXES):
        state = HostPullState.DRAFT
    else:
        state = HostPullState.OPEN
    checks = pull.get("_checks")
    return ChangesetSnapshot(
        changeset_id=changeset_id,
        number=number,
        state=state,
        title=title,
        url=str(pull.get("html_url") or ""),
        review_state=_review_state(as_list(pull.get("_reviews"))),
        check_state=_CHECKS.get(checks, CheckState.UNKNOWN)
        if isinstance(checks, str)
        else CheckState.UNKNOWN,
        additions=int(pull.get("additions") or 0),
        deletions=int(pull.get("deletions") or 0),
        head_ref=str(as_dict(pull.get("head")).get("ref") or ""),
        base_ref=str(as_dict(pull.get("base")).get("ref") or ""),
        updated_at=parse_iso(pull.get("updated_at")),
        events=events,
    )
