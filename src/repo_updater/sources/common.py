"""Pieces the GitLab, Gitea and Bitbucket Server sources share: the "owners, then explicit
repos" listing skeleton, concurrent loading and small parsers. (The client plumbing every
source shares, GitHub's too, is ``rest.RestSource`` around ``http.HostClient``.)"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from repo_updater.core.batching import group_by
from repo_updater.core.domain import ChangesetRef, ChangesetSnapshot, HostPullState, SourcedRepo
from repo_updater.core.errors import NotFound, RateLimited, SourceError
from repo_updater.core.selection import Selection

log = logging.getLogger(__name__)

T = TypeVar("T")


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

    host_url: str

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
        groups = group_by(refs, lambda r: r.repo_name)
        jobs = [(name, self._load_repo(name, rs)) for name, rs in groups.items()]
        found = await load_groups(self.host_url, jobs)
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
