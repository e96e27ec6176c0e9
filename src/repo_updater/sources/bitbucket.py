"""Bitbucket Server / Data Center source (REST 1.0).

Listing: ``GET /projects/{key}/repos?start=&limit=`` per configured project key, pages 2..
asked ahead by computed ``start`` offsets and checked against ``nextPageStart`` (see
``_project_pages``) until ``isLastPage``, then ``GET /projects/{key}/repos/{slug}`` per explicit
``KEY/slug``. ``archived`` is Bitbucket 8+'s flag (absent, hence False, on older servers).

Changesets, per repo: one ref -> ``GET /pull-requests/{id}``. Several -> pages of
``GET /pull-requests?state=ALL&order=NEWEST`` while fewer pages have been read than refs are
still missing (Bitbucket sends no total, so this caps the listing at about the cost of single
GETs), then a single GET for each ref not seen (404 -> DELETED). Batch-change PRs are recent,
so that is usually one request per repo. Reviews come from ``reviewers[].status``.

Check state of an open PR (``load_builds``, on by default: +1 request per open PR): the build
statuses of its head commit, ``GET /rest/build-status/1.0/commits/{fromRef.latestCommit}`` (a
core REST API beside ``/rest/api/1.0``; one status per build key, newest first). Any
``FAILED`` or ``CANCELLED`` -> FAILED, else any ``INPROGRESS`` -> PENDING, else any
``SUCCESSFUL`` -> PASSED, else (none, or only ``UNKNOWN``) UNKNOWN.

An existing project with no repositories (or none the token may read) lists an empty page
(``200``, ``isLastPage: true``); only an unknown project key is a 404. Writes are in
``bitbucket_writes``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack
from urllib.parse import quote

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
from repo_updater.sources.bitbucket_files import BitbucketFiles
from repo_updater.sources.bitbucket_writes import BitbucketWrites
from repo_updater.sources.common import (
    PerRepoPullLoader,
    as_dict,
    as_list,
    list_selection,
    parse_epoch_ms,
)
from repo_updater.sources.paging import Page, ordered_pages
from repo_updater.sources.permissions import BitbucketPermissions
from repo_updater.sources.rest import DEFAULT_CONCURRENCY, RestSource, SourceOptions

DEFAULT_LIMIT = 100
PULLS_LIMIT = 50
_STATES = {"OPEN": HostPullState.OPEN, "DECLINED": HostPullState.CLOSED}
_STATES["MERGED"] = HostPullState.MERGED
BUILD_STATUS_API = "/rest/build-status/1.0"


def _repo_path(full_name: str) -> str:
    key, _, slug = full_name.partition("/")
    return f"/projects/{quote(key, safe='')}/repos/{quote(slug, safe='')}"


class BitbucketServerSource(
    BitbucketPermissions, BitbucketWrites, BitbucketFiles, PerRepoPullLoader, RestSource
):
    kind = HostKind.BITBUCKET_SERVER
    api_suffix = "/rest/api/1.0"

    def __init__(
        self,
        *,
        limit: int = DEFAULT_LIMIT,
        load_builds: bool = True,
        concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[SourceOptions],
    ) -> None:
        super().__init__(
            headers={"Accept": "application/json"},
            concurrency=concurrency,
            **options,
        )
        self.limit = max(1, limit)
        self.load_builds = load_builds
        # Absolute (same origin as the API root): it is not under /rest/api/1.0.
        self._builds_root = self.host_url.removesuffix(self.api_suffix) + BUILD_STATUS_API

    async def _paged(
        self, url: str, start: int, limit: int, kind: str, **params: str
    ) -> tuple[list[Any], int | None]:
        """One page of a Bitbucket paged API: its values and the next start (None: last)."""
        query = {**params, "start": str(start), "limit": str(limit)}
        if kind == "list_repos":  # rate limits go to the listing's Pacer
            data, _ = await self._get_page(url, params=query)
        else:
            data, _ = await self._get(url, kind=kind, params=query)
        page = as_dict(data)
        values = page.get("values")
        if not isinstance(values, list) or not isinstance(page.get("isLastPage"), bool):
            raise HostError(f"GET {url}: malformed page (no values/isLastPage)")
        if page["isLastPage"]:
            return values, None
        next_start = page.get("nextPageStart")
        if not isinstance(next_start, int) or next_start <= start:
            raise HostError(f"GET {url}: page is not the last but has no usable nextPageStart")
        return values, next_start

    # --- repositories ------------------------------------------------------------------------

    def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        return list_selection(self.selection, self._project_pages, self._get_repo)

    async def _project_pages(self, key: str) -> AsyncIterator[list[SourcedRepo]]:
        """Page 1 (``start=0``); its ``nextPageStart`` is the page size the server uses
        (it may cap ``limit``). Pages 2.. are then asked ahead at ``start = (n - 1) * size``,
        ``list_concurrency`` at once (``sources.paging``; Bitbucket sends no total, so up to
        ``list_concurrency - 1`` requests go past the end: an empty last page), and each
        page's ``nextPageStart`` must be its start + size, else the listing fails (never a
        listing cut short by a guess). A first page whose ``nextPageStart`` is not the
        number of values it held (a server that pages otherwise) is followed one page at a
        time."""
        url = f"/projects/{quote(key, safe='')}/repos"
        pacer = self._list_pacer()
        values, start = await pacer.run(lambda: self._paged(url, 0, self.limit, "list_repos"))
        step = start
        if step is None or step != len(values):
            yield [self._repo(r) for r in values]
            while start is not None:
                page = functools.partial(self._paged, url, start, self.limit, "list_repos")
                values, start = await pacer.run(page)
                yield [self._repo(r) for r in values]
            return

        async def fetch(n: int) -> Page[list[SourcedRepo]]:
            at = (n - 1) * step
            values, following = await self._paged(url, at, self.limit, "list_repos")
            if following is not None and following != at + step:
                raise HostError(
                    f"GET {url}: page at start={at} says the next starts at {following}, "
                    f"not {at + step}"
                )
            return Page([self._repo(r) for r in values], following is not None)

        first = Page([self._repo(r) for r in values], True)
        async for repos in ordered_pages(first, fetch, pacer, speculate=True):
            yield repos

    async def get_repo(self, external_id: str, name: str) -> SourcedRepo | None:
        """Bitbucket Server has no lookup by id: ``GET /projects/{key}/repos/{slug}`` by the
        name the delivery gave; None on 404 or when that name now holds another repo."""
        try:
            repo = await self._get_repo(name)
        except NotFound:
            return None
        return repo if repo.external_id == external_id else None

    async def _get_repo(self, name: str) -> SourcedRepo:
        data, _ = await self._get(_repo_path(name), kind="get_repo")
        return self._repo(data)

    @staticmethod
    def _repo(repo: Any) -> SourcedRepo:
        r = as_dict(repo)
        key = as_dict(r.get("project")).get("key")
        if not isinstance(r.get("id"), int) or not isinstance(r.get("slug"), str) or not key:
            raise HostError("malformed Bitbucket repository: missing id, slug or project key")
        links = as_list(as_dict(r.get("links")).get("self"))
        return SourcedRepo(
            external_id=str(r["id"]),
            name=f"{key}/{r['slug']}",
            url=str(as_dict(links[0]).get("href") or "") if links else "",
            archived=bool(r.get("archived")),
            fork=bool(r.get("origin")),
            private=not r.get("public", False),
            description=str(r.get("description") or ""),
        )

    # --- changesets --------------------------------------------------------------------------

    def _to_snapshot(self, changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot:
        return _snapshot(changeset_id, pull)

    async def _list_pulls(
        self, repo_name: str, wanted: set[int], pulls: dict[int, dict[str, Any]]
    ) -> None:
        url = _repo_path(repo_name) + "/pull-requests"
        start: int | None = 0
        pages = 0
        while start is not None and pages < len(wanted - pulls.keys()):
            try:
                values, start = await self._paged(
                    url, start, PULLS_LIMIT, "load_changesets", state="ALL", order="NEWEST"
                )
            except NotFound:
                return  # the repo is gone: the single GETs will say so
            pages += 1
            for item in values:
                number = as_dict(item).get("id")
                if number in wanted:
                    pulls[number] = item

    async def _get_pull(self, repo_name: str, number: int) -> dict[str, Any] | None:
        try:
            data, _ = await self._get(
                f"{_repo_path(repo_name)}/pull-requests/{number}", kind="load_changeset"
            )
        except NotFound:
            return None
        return as_dict(data)

    async def _complete(self, repo_name: str, pull: dict[str, Any]) -> None:
        """Add the build statuses of an open PR's head commit, in place."""
        sha = as_dict(pull.get("fromRef")).get("latestCommit")
        if not self.load_builds or pull.get("state") != "OPEN" or not isinstance(sha, str):
            return
        url = f"{self._builds_root}/commits/{quote(sha, safe='')}"
        states: list[Any] = []
        start: int | None = 0
        while start is not None:
            values, start = await self._paged(url, start, DEFAULT_LIMIT, "load_checks")
            states.extend(as_dict(v).get("state") for v in values)
        pull["_builds"] = states


def _check_state(pull: dict[str, Any]) -> CheckState:
    states = set(as_list(pull.get("_builds")))
    if states & {"FAILED", "CANCELLED"}:
        return CheckState.FAILED
    if "INPROGRESS" in states:
        return CheckState.PENDING
    if "SUCCESSFUL" in states:
        return CheckState.PASSED
    return CheckState.UNKNOWN


def _review_state(pull: dict[str, Any]) -> ReviewState:
    statuses = {as_dict(r).get("status") for r in as_list(pull.get("reviewers"))}
    if "NEEDS_WORK" in statuses:
        return ReviewState.CHANGES_REQUESTED
    if "APPROVED" in statuses:
        return ReviewState.APPROVED
    return ReviewState.PENDING


def _snapshot(changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot:
    number = pull.get("id")
    state = _STATES.get(str(pull.get("state")))
    if not isinstance(number, int) or state is None:
        raise HostError("malformed Bitbucket pull request: missing id or unknown state")
    if state is HostPullState.OPEN and pull.get("draft"):
        state = HostPullState.DRAFT
    closed_at = parse_epoch_ms(pull.get("closedDate"))
    events: tuple[ChangesetEvent, ...] = ()
    if closed_at is not None and state in (HostPullState.MERGED, HostPullState.CLOSED):
        events = (
            ChangesetEvent(
                kind="merged" if state is HostPullState.MERGED else "closed", at=closed_at
            ),
        )
    links = as_list(as_dict(pull.get("links")).get("self"))
    return ChangesetSnapshot(
        changeset_id=changeset_id,
        number=number,
        state=state,
        title=str(pull.get("title") or ""),
        url=str(as_dict(links[0]).get("href") or "") if links else "",
        review_state=_review_state(pull),
        check_state=_check_state(pull),
        head_ref=str(as_dict(pull.get("fromRef")).get("displayId") or ""),
        base_ref=str(as_dict(pull.get("toRef")).get("displayId") or ""),
        updated_at=parse_epoch_ms(pull.get("updatedDate")),
        events=events,
    )
