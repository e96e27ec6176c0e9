"""Pieces the GitLab, Gitea and Bitbucket Server sources share: error classification, the
"owners, then explicit repos" listing skeleton, concurrent loading and small parsers. (The
client plumbing every source shares, GitHub's too, is ``base.RestSource``.)"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from repo_updater.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostPullState,
    NotFound,
    RateLimited,
    RepoArchived,
    SourcedRepo,
    SourceError,
    Unauthorized,
)
from repo_updater.sources.base import Selection, retry_after_seconds

log = logging.getLogger(__name__)

T = TypeVar("T")


class Forbidden(Unauthorized):
    """A 403 whose body does not say why. Writes check whether the repo is archived."""


class Conflict(SourceError):
    """409: the write conflicts with existing state (e.g. a pull request for that branch
    already exists). Not a ``HostError``, so the client does not retry it."""


def error_detail(response: httpx.Response) -> str:
    """The host's error message: ``message``, ``error`` or Bitbucket's ``errors[].message``."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        for key in ("message", "error"):
            if key in body:
                return str(body[key])
    return str(body)[:200]


def classify_response(
    response: httpx.Response,
    redact: Callable[[str], str],
    *,
    archived_statuses: Iterable[int] = (),
) -> SourceError | None:
    """Map the statuses every non-GitHub host shares; ``None`` for the generic mapping.

    429 -> RateLimited (``Retry-After`` or an epoch reset header); 401 -> Unauthorized; 403 ->
    RepoArchived when the body says "archived", else Forbidden; ``archived_statuses`` (Gitea's
    423 Locked) -> RepoArchived; 404 -> NotFound with the host's message.
    """
    request = response.request
    where = f"{request.method} {redact(str(request.url.copy_with(query=None)))}"
    status = response.status_code
    detail = redact(error_detail(response))[:200]
    if status == 429:
        wait = retry_after_seconds(response.headers)
        return RateLimited(f"{where}: rate limited (retry after {wait:.0f}s)", wait)
    if status == 401:
        return Unauthorized(f"{where}: 401 unauthorized (check the token)")
    if status in archived_statuses or (status == 403 and "archived" in detail.lower()):
        return RepoArchived(f"{where}: repository is archived: {detail}")
    if status == 403:
        return Forbidden(f"{where}: 403 forbidden: {detail}")
    if status == 404:
        return NotFound(f"{where}: 404 not found: {detail}")
    if status == 409:
        return Conflict(f"{where}: 409 conflict: {detail}")
    return None


async def list_selection(
    selection: Selection,
    owner_pages: Callable[[str], AsyncIterator[list[SourcedRepo]]],
    get_repo: Callable[[str], Awaitable[SourcedRepo]],
) -> AsyncIterator[list[SourcedRepo]]:
    """Owners' pages, then the explicit repos (one page each), excluded names and duplicates
    dropped. An explicit repo the host answers 404 for is gone and skipped (logged); any other
    failure propagates, after the pages already yielded."""
    seen: set[str] = set()

    def keep(repos: Iterable[SourcedRepo]) -> list[SourcedRepo]:
        out = []
        for r in repos:
            if r.external_id in seen or selection.excluded(r.name):
                continue
            seen.add(r.external_id)
            out.append(r)
        return out

    for owner in selection.owners:
        async for page in owner_pages(owner):
            kept = keep(page)
            if kept:
                yield kept
    for name in selection.repos:
        if selection.excluded(name):
            continue
        try:
            repo = await get_repo(name)
        except NotFound:
            log.warning("configured repository %s not found; skipping it", name)
            continue
        page = keep([repo])
        if page:
            yield page


async def gather_all(jobs: Iterable[Awaitable[T]]) -> list[T]:
    """Await all ``jobs`` concurrently, results in order; when one fails, cancel the others
    and raise its error."""
    tasks = [asyncio.ensure_future(j) for j in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def load_groups(
    service: str,
    jobs: Iterable[tuple[str, Awaitable[dict[ChangesetRef, ChangesetSnapshot]]]],
) -> dict[ChangesetRef, ChangesetSnapshot]:
    """Run one changeset-loading job per repository (``(repo name, job)``) concurrently and
    merge what they found.

    A job that fails with a ``SourceError`` other than ``RateLimited`` (the repo is forbidden,
    its pull requests are malformed, the host failed for it) costs only its own refs: they
    are left out, so the caller reports them as not loaded and retries them, and a warning
    names the repo. ``RateLimited`` and unexpected errors cancel the rest and propagate, and
    when every job failed the first failure is raised (it says more than "no data")."""
    labelled = list(jobs)
    if not labelled:
        return {}

    async def tolerant(
        job: Awaitable[dict[ChangesetRef, ChangesetSnapshot]],
    ) -> dict[ChangesetRef, ChangesetSnapshot] | SourceError:
        try:
            return await job
        except RateLimited:
            raise
        except SourceError as exc:
            return exc

    results = await gather_all(tolerant(job) for _, job in labelled)
    found: dict[ChangesetRef, ChangesetSnapshot] = {}
    errors: list[SourceError] = []
    for (repo, _), result in zip(labelled, results, strict=True):
        if isinstance(result, SourceError):
            errors.append(result)
            log.warning(
                "%s: could not load the changesets of %s, left for a retry: %s",
                service, repo, result,
            )  # fmt: skip
        else:
            found.update(result)
    if len(errors) == len(labelled):
        raise errors[0]
    return found


def group_refs(
    refs: Sequence[ChangesetRef], key: Callable[[ChangesetRef], str]
) -> dict[str, list[ChangesetRef]]:
    groups: dict[str, list[ChangesetRef]] = {}
    for ref in refs:
        groups.setdefault(key(ref), []).append(ref)
    return groups


def deleted(ref: ChangesetRef) -> ChangesetSnapshot:
    return ChangesetSnapshot(
        changeset_id=ref.changeset_id, number=ref.number, state=HostPullState.DELETED
    )


def parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value / 1000, UTC)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


class PerRepoPullLoader(abc.ABC):
    """``load_changesets`` for hosts without a batch API (Gitea, Bitbucket Server): per repo,
    list its pulls when several are wanted (``_list_pulls`` decides how far paging is worth it),
    GET the ones the listing did not show, let ``_complete`` add what the listing lacks, and
    report the rest DELETED. A repo that fails (other than a rate limit) is left out and logged
    (see ``load_groups``)."""

    service_id: str

    @abc.abstractmethod
    async def _list_pulls(
        self, repo_name: str, wanted: set[int], pulls: dict[int, dict[str, Any]]
    ) -> None: ...

    @abc.abstractmethod
    async def _get_pull(self, repo_name: str, number: int) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def _to_snapshot(self, changeset_id: int, pull: dict[str, Any]) -> ChangesetSnapshot: ...

    async def _complete(self, repo_name: str, pull: dict[str, Any]) -> None:
        """Add what the host's pull JSON lacks (reviews, checks); nothing by default."""
        return None

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        """Snapshots of ``refs`` in order, failed repos left out."""
        groups = group_refs(refs, lambda r: r.repo_name)
        jobs = [(name, self._load_repo(name, rs)) for name, rs in groups.items()]
        found = await load_groups(self.service_id, jobs)
        return [found[ref] for ref in refs if ref in found]

    async def _load_repo(
        self, repo_name: str, refs: list[ChangesetRef]
    ) -> dict[ChangesetRef, ChangesetSnapshot]:
        wanted = {r.number for r in refs}
        pulls: dict[int, dict[str, Any]] = {}
        if len(wanted) > 1:
            await self._list_pulls(repo_name, wanted, pulls)
        missing = sorted(wanted - pulls.keys())
        singles = await gather_all(self._get_pull(repo_name, n) for n in missing)
        pulls.update({n: p for n, p in zip(missing, singles, strict=True) if p is not None})
        await gather_all(self._complete(repo_name, p) for p in pulls.values())
        out: dict[ChangesetRef, ChangesetSnapshot] = {}
        for ref in refs:
            pull = pulls.get(ref.number)
            out[ref] = deleted(ref) if pull is None else self._to_snapshot(ref.changeset_id, pull)
        return out
