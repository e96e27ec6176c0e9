"""Gitea source (API v1).

Listing: ``GET /orgs/{owner}/repos`` per owner, falling back to ``GET /users/{owner}/repos``
when the org does not exist, paged by page number on the configured URL (``page``, ``limit``
50, Gitea's default maximum; pages 2..N at once, ``list_concurrency``, up to the page
``X-Total-Count`` makes the last): ``Link`` URLs start with Gitea's own ``ROOT_URL``, which need not
be the URL we reach it at, so a ``Link: rel="next"`` only says that there is a next page, as
``X-Total-Count`` does. The page size is what page 1 held when the server capped ``limit``
lower (an admin may lower ``MAX_RESPONSE_ITEMS``). Then ``GET /repos/{owner}/{name}`` per
explicit repo.

Changesets, per repo: one ref -> ``GET /pulls/{index}``. Several -> the first page of
``GET /pulls?state=all`` (newest first); if the rest of the listing (``X-Total-Count``) costs
fewer requests than fetching the refs not yet found one by one, the source pages on, else it
GETs them singly. A ref the listing did not show is confirmed with a single GET before it is
reported DELETED (listings shift while paged). So a repo costs ``min(pages, 1 + missing)``
requests. Gitea puts neither reviews nor CI status on a PR, so for each open PR the source
also GETs every page of ``/pulls/{index}/reviews`` (``load_reviews``) and the head commit's
combined status (``load_checks``): +2 requests per open PR when both are on (the default).

Diff stats: PR lists never carry ``additions``/``deletions`` (Gitea's ``ToAPIPullRequests``
leaves them out; they are slow to compute), and only newer servers put them on the single GET.
An open PR seen only in a list is fetched singly for them (``load_diff_stats``) unless the
server showed it never sends them; otherwise they are unknown (the store keeps its values).

Combined status ``state`` -> check state: ``success``, ``warning`` (success on Gitea < 1.26),
``skipped`` -> PASSED; ``failure``, ``error``, ``running_with_failure`` (forks) -> FAILED;
``pending``, ``running`` (Gitea <= 1.20) -> PENDING; ``""`` (no statuses) and others -> UNKNOWN.

Writes are in ``gitea_writes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
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
from repo_updater.sources.gitea_files import GiteaFiles
from repo_updater.sources.gitea_writes import GiteaWrites
from repo_updater.sources.http import parse_next_link
from repo_updater.sources.paging import Page, ordered_pages
from repo_updater.sources.permissions import GiteaPermissions
from repo_updater.sources.rest import DEFAULT_CONCURRENCY, RestSource, SourceOptions

MAX_LIMIT = 50
WIP_PREFIXES = ("wip:", "[wip]")
_CHECKS = dict.fromkeys(("success", "warning", "skipped"), CheckState.PASSED)
_CHECKS |= dict.fromkeys(("failure", "error", "running_with_failure"), CheckState.FAILED)
_CHECKS |= dict.fromkeys(("pending", "running"), CheckState.PENDING)


def _repo_path(full_name: str) -> str:
    owner, _, name = full_name.partition("/")
    return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"


class GiteaSource(GiteaPermissions, GiteaWrites, GiteaFiles, PerRepoPullLoader, RestSource):
    kind = HostKind.GITEA
    api_suffix = "/api/v1"
    archived_statuses = (423,)  # Locked

    def __init__(
        self,
        *,
        limit: int = MAX_LIMIT,
        load_reviews: bool = True,
        load_checks: bool = True,
        load_diff_stats: bool = True,
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
        self.load_diff_stats = load_diff_stats
        self._single_has_stats: bool | None = None  # does this server put them on a GET?

    # --- repositories ------------------------------------------------------------------------

    def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        return list_selection(self.selection, self._owner_pages, self._get_repo)

    async def _owner_pages(self, owner: str) -> AsyncIterator[list[SourcedRepo]]:
        """Page 1 (as an org, else as a user), then pages 2..N concurrently up to what
        ``X-Total-Count`` makes the last page (``sources.paging``); without the header, one
        page at a time. Gitea lists an owner's repositories by id, oldest first."""
        pacer = self._list_pacer()
        org = f"/orgs/{quote(owner, safe='')}/repos"
        try:
            data, response = await pacer.run(lambda: self._page(org, 1))
            base = org
        except NotFound:  # not an org: a user
            base = f"/users/{quote(owner, safe='')}/repos"
            data, response = await pacer.run(lambda: self._page(base, 1))
        size = self._page_size(data, response)

        def page_of(n: int, data: list[Any], response: httpx.Response) -> Page[list[SourcedRepo]]:
            # An empty page is not the end: only the absence of both next markers is.
            more = self._more(response, n * size, base)
            counted = "x-total-count" in response.headers
            last = max(1, -(-_total(response) // size)) if counted else None
            return Page([self._repo(r) for r in data], more, last)

        async def fetch(n: int) -> Page[list[SourcedRepo]]:
            return page_of(n, *await self._page(base, n))

        async for repos in ordered_pages(page_of(1, data, response), fetch, pacer):
            yield repos

    def _page_size(self, first_page: list[Any], response: httpx.Response) -> int:
        """Items per page as the server pages: ``limit``, or fewer when page 1 of a longer
        listing held fewer (the server caps ``limit`` at its ``MAX_RESPONSE_ITEMS``)."""
        total = _total(response)
        if first_page and len(first_page) < self.limit and total > len(first_page):
            return len(first_page)
        return self.limit

    @staticmethod
    def _more(response: httpx.Response, seen: int, where: str) -> bool:
        """Whether a page follows: ``X-Total-Count`` says so, or a ``Link: rel="next"`` (its
        URL is not followed: it starts with Gitea's ROOT_URL, see the module docstring)."""
        total = response.headers.get("x-total-count", "").strip()
        if total and not total.isdigit():
            raise HostError(f"GET {where}: malformed X-Total-Count {total[:20]!r}")
        if parse_next_link(response.headers) is not None:
            return True
        return bool(total) and seen < int(total)

    async def _page(self, url: str, page: int) -> tuple[list[Any], httpx.Response]:
        params = {"page": str(page), "limit": str(self.limit)}
        data, response = await self._get_page(url, params=params)
        if not isinstance(data, list):
            raise HostError(f"GET {url}: expected a list")
        return data, response

    async def _list(
        self, url: str, params: dict[str, str] | None, kind: str = "list_repos"
    ) -> tuple[list[Any], httpx.Response]:
        data, response = await self._get(url, kind=kind, params=params)
        if not isinstance(data, list):
            raise HostError(f"GET {url}: expected a list")
        return data, response

    async def get_repo(self, external_id: str, name: str) -> SourcedRepo | None:
        """``GET /repositories/{id}``; None on 404."""
        try:
            data, _ = await self._get(
                f"/repositories/{quote(external_id, safe='')}", kind="get_repo"
            )
        except NotFound:
            return None
        return self._repo(data)

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
        page, size = 1, MAX_LIMIT
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
            total = _total(response)
            if page == 1 and data and len(data) < size and total > len(data):
                size = len(data)  # the server caps limit lower
            pages_left = -(-total // size) - page
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
        """Add diff stats, reviews and the combined CI status to an open PR, in place."""
        if pull.get("state") != "open":
            return
        base = _repo_path(repo_name)
        number = pull.get("number")
        if self.load_diff_stats and "additions" not in pull and self._single_has_stats is not False:
            single = await self._get_pull(repo_name, int(number or 0))
            if single is not None:
                self._single_has_stats = "additions" in single
                for key in ("additions", "deletions"):
                    if key in single:
                        pull[key] = single[key]
        if self.load_reviews:
            pull["_reviews"] = await self._reviews(f"{base}/pulls/{number}/reviews")
        sha = as_dict(pull.get("head")).get("sha")
        if self.load_checks and isinstance(sha, str) and sha:
            status, _ = await self._get(f"{base}/commits/{quote(sha)}/status", kind="load_checks")
            pull["_checks"] = as_dict(status).get("state")

    async def _reviews(self, url: str) -> list[Any]:
        """Every page of a PR's reviews (``X-Total-Count``; no ``Link``), oldest first."""
        reviews: list[Any] = []
        page = 1
        while True:
            params = {"page": str(page), "limit": str(MAX_LIMIT)}
            data, response = await self._list(url, params, kind="load_reviews")
            reviews.extend(data)
            counted = "x-total-count" in response.headers
            if not data or (len(reviews) >= _total(response) if counted else len(data) < MAX_LIMIT):
                break
            page += 1
        # The last verdict per reviewer counts: order by submission, not by server order.
        return sorted(reviews, key=_review_order)


def _total(response: httpx.Response) -> int:
    value = response.headers.get("x-total-count", "").strip()
    return int(value) if value.isdigit() else 0


def _review_order(review: Any) -> tuple[datetime, int]:
    r = as_dict(review)
    ident = r.get("id")
    at = parse_iso(r.get("submitted_at")) or datetime.min.replace(tzinfo=UTC)
    return at, ident if isinstance(ident, int) and not isinstance(ident, bool) else 0


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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
    head = as_dict(pull.get("head"))
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
        additions=_optional_int(pull.get("additions")),  # lists never have them
        deletions=_optional_int(pull.get("deletions")),
        # ``label`` is the branch name; ``ref`` is ``refs/pull/N/head`` once the branch is gone
        head_ref=str(head.get("label") or head.get("ref") or ""),
        base_ref=str(as_dict(pull.get("base")).get("ref") or ""),
        updated_at=parse_iso(pull.get("updated_at")),
        events=events,
    )
