"""GitLab source (REST v4).

Listing: ``GET /groups/{path}/projects?include_subgroups=true`` per configured group (100 per
page, ``order_by=id``), paged by ``X-Next-Page`` on the configured URL; only without it (keyset
paging) does the source follow ``Link: rel="next"``, re-based on the configured URL (GitLab
builds links from its own ``external_url``, which need not be the URL we reach it at). Then
``GET /projects/{path}`` per explicit project.

Changesets: one ``GET /projects/{id}/merge_requests?iids[]=..&state=all`` per project and up to
100 merge requests. GitLab leaves ``head_pipeline`` out of MR *lists*, so for open MRs whose
list entry lacks it the source GETs the single MR (``load_pipelines``, default on). For each
open MR it also GETs ``/reviewers`` (``load_reviewers``) and ``/approvals``
(``load_approvals``), both on by default and both in GitLab CE.

Review state of an open MR: any reviewer whose ``state`` is ``requested_changes`` (or, on EE,
``detailed_merge_status == "requested_changes"``) -> CHANGES_REQUESTED; else a reviewer in
state ``approved`` or anyone in ``/approvals``' ``approved_by`` -> APPROVED; else a reviewer
in state ``reviewed`` -> COMMENTED; else PENDING.

Check state, from ``head_pipeline.status`` (``Ci::HasStatus``)::

    success                                                        PASSED
    failed, canceled, canceling (it ends canceled)                 FAILED
    created, waiting_for_resource, preparing, waiting_for_callback,
    pending, running, scheduled (a delayed job starts by itself)   PENDING
    manual (blocked on a person's action), skipped, none, unknown  UNKNOWN

MR states: ``opened`` -> OPEN (DRAFT when ``draft``), ``merged`` -> MERGED, ``closed`` and
``locked`` -> CLOSED (``locked``, as in Sourcegraph: GitLab locks an MR while merging it or
when an admin locks it; it takes no changes either way).

Writes are in ``gitlab_writes``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from repo_updater.core.batching import group_by
from repo_updater.core.domain import (
    ChangesetEvent,
    ChangesetRef,
    ChangesetSnapshot,
    CheckState,
    HostKind,
    HostPullState,
    ReviewState,
    SourcedRepo,
)
from repo_updater.core.errors import (
    HostError,
    NotFound,
)
from repo_updater.sources.common import (
    as_dict,
    as_list,
    deleted,
    gather_all,
    list_selection,
    load_groups,
    parse_iso,
)
from repo_updater.sources.gitlab_files import GitLabFiles
from repo_updater.sources.gitlab_writes import GitLabWrites
from repo_updater.sources.http import parse_next_link, rebase_link
from repo_updater.sources.paging import Page, ordered_pages
from repo_updater.sources.permissions import GitLabPermissions
from repo_updater.sources.rest import DEFAULT_CONCURRENCY, RestSource, SourceOptions

MAX_PER_PAGE = 100
_STATES = {"opened": HostPullState.OPEN, "locked": HostPullState.CLOSED}
_STATES |= {"closed": HostPullState.CLOSED, "merged": HostPullState.MERGED}
_PIPELINES = {"success": CheckState.PASSED}
_PIPELINES |= dict.fromkeys(("failed", "canceled", "canceling"), CheckState.FAILED)
_PIPELINES |= dict.fromkeys(
    ("created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending",
     "running", "scheduled"),
    CheckState.PENDING,
)  # fmt: skip


def _path(name: str) -> str:
    return quote(name, safe="")


def _next_page(response: httpx.Response, where: str) -> int | None:
    """``X-Next-Page`` (None: absent or empty)."""
    value = response.headers.get("x-next-page", "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise HostError(f"GET {where}: malformed X-Next-Page {value[:20]!r}")
    return int(value)


class GitLabSource(GitLabPermissions, GitLabWrites, GitLabFiles, RestSource):
    kind = HostKind.GITLAB
    api_suffix = "/api/v4"

    def __init__(
        self,
        *,
        per_page: int = MAX_PER_PAGE,
        load_pipelines: bool = True,
        load_reviewers: bool = True,
        load_approvals: bool = True,
        oauth: bool = False,
        concurrency: int = DEFAULT_CONCURRENCY,
        **options: Unpack[SourceOptions],
    ) -> None:
        """``oauth``: send the token as ``Authorization: Bearer`` (OAuth/job tokens) instead
        of ``PRIVATE-TOKEN`` (personal, group and project access tokens)."""
        super().__init__(
            headers={"Accept": "application/json"},
            token_header=("Authorization", "Bearer {}") if oauth else ("PRIVATE-TOKEN", "{}"),
            concurrency=concurrency,
            **options,
        )
        self.per_page = max(1, min(MAX_PER_PAGE, per_page))
        self.load_pipelines = load_pipelines
        self.load_reviewers = load_reviewers
        self.load_approvals = load_approvals

    # --- repositories ------------------------------------------------------------------------

    def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        return list_selection(self.selection, self._group_pages, self._get_project)

    async def _group_pages(self, group: str) -> AsyncIterator[list[SourcedRepo]]:
        """Page 1, then: by page number while GitLab sends ``X-Next-Page`` (pages 2..N at
        once, ``sources.paging``: up to ``X-Total-Pages``, or asked ahead when GitLab leaves
        it out above 10,000 projects: a page past the end is an empty last page); else
        ``Link: rel="next"`` (keyset paging), one page at a time, re-based."""
        base = f"/groups/{_path(group)}/projects"
        query = {
            "include_subgroups": "true",
            "with_shared": "false",
            "order_by": "id",
            "sort": "asc",
            "per_page": str(self.per_page),
        }
        pacer = self._list_pacer()
        data, response = await pacer.run(lambda: self._projects(base, query))

        def page_of(n: int, data: list[Any], response: httpx.Response) -> Page[list[SourcedRepo]]:
            following = _next_page(response, base)
            if following is not None and following != n + 1:
                raise HostError(f"GET {base}: page {n} says the next is {following}")
            if following is None and parse_next_link(response.headers) is not None:
                # Paged by number so far, now by Link: never end a listing on a guess.
                raise HostError(f"GET {base}: page {n} has a next Link but no X-Next-Page")
            pages = response.headers.get("x-total-pages", "").strip()
            last = int(pages) if pages.isdigit() else None
            return Page([self._repo(p) for p in data], following is not None, last)

        if _next_page(response, base) is not None:

            async def fetch(n: int) -> Page[list[SourcedRepo]]:
                return page_of(n, *await self._projects(base, {**query, "page": str(n)}))

            first = page_of(1, data, response)
            async for repos in ordered_pages(first, fetch, pacer, speculate=True):
                yield repos
            return
        requested = {f"{base}?{query}"}
        while True:
            yield [self._repo(p) for p in data]
            # An empty page is not the end: only the absence of both next markers is.
            link = parse_next_link(response.headers)
            if link is None:
                return
            url = rebase_link(link, self.api_suffix)  # carries its query
            if url in requested:  # a host that points back would keep us here forever
                raise HostError(f"GET {url}: the listing of {group} loops back to a page")
            requested.add(url)
            data, response = await pacer.run(functools.partial(self._projects, url, None))

    async def _projects(
        self, url: str, params: dict[str, str] | None
    ) -> tuple[list[Any], httpx.Response]:
        data, response = await self._get_page(url, params=params)
        if not isinstance(data, list):
            raise HostError(f"GET {url}: expected a list of projects")
        return data, response

    async def get_repo(self, external_id: str, name: str) -> SourcedRepo | None:
        """``GET /projects/{id}``; None on 404."""
        try:
            data, _ = await self._get(f"/projects/{quote(external_id, safe='')}", kind="get_repo")
        except NotFound:
            return None
        return self._repo(data)

    async def _get_project(self, name: str) -> SourcedRepo:
        data, _ = await self._get(f"/projects/{_path(name)}", kind="get_repo")
        return self._repo(data)

    @staticmethod
    def _repo(project: Any) -> SourcedRepo:
        p = as_dict(project)
        if not isinstance(p.get("id"), int) or not isinstance(p.get("path_with_namespace"), str):
            raise HostError("malformed GitLab project: missing id or path_with_namespace")
        return SourcedRepo(
            external_id=str(p["id"]),
            name=p["path_with_namespace"],
            url=str(p.get("web_url") or ""),
            archived=bool(p.get("archived")),
            fork=bool(p.get("forked_from_project")),
            private=p.get("visibility", "private") != "public",
            description=str(p.get("description") or ""),
        )

    # --- changesets --------------------------------------------------------------------------

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        """Snapshots of ``refs`` in order; a project that failed (other than a rate limit)
        is left out and logged (see ``load_groups``)."""
        groups = group_by(refs, lambda r: r.repo_external_id or r.repo_name)
        jobs = [
            (chunk[0].repo_name, self._load_chunk(project, chunk[i : i + MAX_PER_PAGE]))
            for project, chunk in groups.items()
            for i in range(0, len(chunk), MAX_PER_PAGE)
        ]
        found = await load_groups(self.host_url, jobs)
        return [found[ref] for ref in refs if ref in found]

    async def _load_chunk(
        self, project: str, refs: list[ChangesetRef]
    ) -> dict[ChangesetRef, ChangesetSnapshot]:
        params = [("state", "all"), ("per_page", str(MAX_PER_PAGE))]
        params += [("iids[]", str(n)) for n in sorted({r.number for r in refs})]
        url = f"/projects/{_path(project)}/merge_requests"
        try:
            data, _ = await self._get(url, kind="load_changesets", params=params)
        except NotFound:  # the project is gone (or no longer visible): so are its MRs
            return {ref: deleted(ref) for ref in refs}
        if not isinstance(data, list):
            raise HostError(f"GET {url}: expected a list of merge requests")
        by_iid = {m.get("iid"): m for m in data if isinstance(m, dict)}
        await gather_all(self._complete(project, mr) for mr in by_iid.values())
        out: dict[ChangesetRef, ChangesetSnapshot] = {}
        for ref in refs:
            mr = by_iid.get(ref.number)
            out[ref] = deleted(ref) if mr is None else _snapshot(ref.changeset_id, mr)
        return out

    async def _complete(self, project: str, mr: dict[str, Any]) -> None:
        """Add what the list leaves out (pipeline, reviewers, approvals) to an open MR, in
        place."""
        if mr.get("state") != "opened":
            return
        base = f"/projects/{_path(project)}/merge_requests/{mr['iid']}"
        if self.load_pipelines and "head_pipeline" not in mr:
            full, _ = await self._get(base, kind="load_changeset_detail")
            mr["head_pipeline"] = as_dict(full).get("head_pipeline")
        if self.load_reviewers:
            reviewers, _ = await self._get(
                base + "/reviewers", kind="load_reviewers", params={"per_page": "100"}
            )
            mr["_reviewer_states"] = [as_dict(r).get("state") for r in as_list(reviewers)]
        if self.load_approvals:
            approvals, _ = await self._get(base + "/approvals", kind="load_approvals")
            mr["_approved"] = bool(as_dict(approvals).get("approved_by"))

    def _to_snapshot(self, changeset_id: int, mr: dict[str, Any]) -> ChangesetSnapshot:
        """A merge request as GitLab answers it (its writes, in ``gitlab_writes``, use it)."""
        return _snapshot(changeset_id, mr)


def _check_state(mr: dict[str, Any]) -> CheckState:
    """The head pipeline's status, mapped as the module docstring's table says."""
    status = as_dict(mr.get("head_pipeline")).get("status")
    if not isinstance(status, str):
        return CheckState.UNKNOWN
    return _PIPELINES.get(status, CheckState.UNKNOWN)


def _review_state(mr: dict[str, Any]) -> ReviewState:
    """From the reviewers' states (``MergeRequestReviewer``: unreviewed, reviewed,
    requested_changes, approved, unapproved, review_started) and the approvals."""
    states = set(as_list(mr.get("_reviewer_states")))
    if "requested_changes" in states or mr.get("detailed_merge_status") == "requested_changes":
        return ReviewState.CHANGES_REQUESTED
    if "approved" in states or mr.get("_approved"):
        return ReviewState.APPROVED
    if "reviewed" in states:
        return ReviewState.COMMENTED
    return ReviewState.PENDING


def _snapshot(changeset_id: int, mr: dict[str, Any]) -> ChangesetSnapshot:
    if not isinstance(mr.get("iid"), int):
        raise HostError("malformed GitLab merge request: missing iid")
    state = _STATES.get(str(mr.get("state")))
    if state is None:
        raise HostError(f"GitLab merge request !{mr['iid']}: unknown state {mr.get('state')!r}")
    if state is HostPullState.OPEN and (mr.get("draft") or mr.get("work_in_progress")):
        state = HostPullState.DRAFT
    merged_at, closed_at = parse_iso(mr.get("merged_at")), parse_iso(mr.get("closed_at"))
    events: tuple[ChangesetEvent, ...] = ()
    if state is HostPullState.MERGED and merged_at is not None:
        events = (ChangesetEvent(kind="merged", at=merged_at),)
    elif state is HostPullState.CLOSED and closed_at is not None:
        events = (ChangesetEvent(kind="closed", at=closed_at),)
    return ChangesetSnapshot(
        changeset_id=changeset_id,
        number=mr["iid"],
        state=state,
        title=str(mr.get("title") or ""),
        url=str(mr.get("web_url") or ""),
        review_state=_review_state(mr),
        check_state=_check_state(mr),
        head_ref=str(mr.get("source_branch") or ""),
        base_ref=str(mr.get("target_branch") or ""),
        updated_at=parse_iso(mr.get("updated_at")),
        events=events,
    )
