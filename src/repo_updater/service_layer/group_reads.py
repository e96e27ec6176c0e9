"""The stored rows a group of pages is diffed against, read in one statement while the group
writes nothing (issue 12: the cold unchanged re-sync on PostgreSQL).

The repo syncer diffs each page of a group against the store as it is after the previous
pages' writes (same transaction). A read only goes stale through a write, so the rows of
every page still to be diffed can be read at once and used until the group writes: then the
rest is read again, at once, on the next page that needs a read. An unchanged group (a cold
re-sync: every page read, nothing written) costs one statement instead of one per page; on
PostgreSQL each statement is a round trip and an executor start on a 2-core box shared with
the code host, which made the per-page reads most of the time above the floor.

Pages the last sync remembered unchanged (``page_memo``) are left out of a read: they are
usually skipped without one (a warm re-sync reads nothing). If one turns out to need a read
after all (a repeat of an earlier page's repo), it gets a read of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.core.diff import StoredRepo
from repo_updater.core.domain import SourcedRepo
from repo_updater.service_layer.repo_sync_result import SyncRun
from repo_updater.store import repos as repo_store


class GroupReads:
    """The stored rows of a group's pages from index ``i`` on, valid until the group writes."""

    __slots__ = ("_from", "_keys", "_pages", "_rows", "_run")

    def __init__(
        self,
        run: SyncRun,
        pages: Sequence[Sequence[SourcedRepo]],
        keys: Sequence[bytes],
        rows: dict[str, StoredRepo] | None = None,
    ) -> None:
        """``keys``: the pages' digests; ``rows``: every page's stored rows, read already
        (nothing written since)."""
        self._run, self._pages, self._keys = run, pages, keys
        self._rows = rows
        self._from = 0  # the first page ``_rows`` covers; later pages: unless remembered

    def wrote(self) -> None:
        """The group wrote: what was read may be stale."""
        self._rows = None

    async def for_page(self, conn: AsyncConnection, i: int) -> Mapping[str, StoredRepo]:
        """Stored rows by external id, covering page ``i`` (and possibly more: the diff
        looks up its page's ids only)."""
        if self._rows is not None and (i == self._from or not self._remembered(i)):
            return self._rows
        ids = [r.external_id for r in self._pages[i]]
        for j in range(i + 1, len(self._pages)):
            if not self._remembered(j):
                ids.extend(r.external_id for r in self._pages[j])
        run = self._run
        self._rows = await repo_store.stored_for_page(
            conn,
            host_kind=run.source.kind,
            host_url=run.source.host_url,
            external_service_id=run.external_service_id,
            external_ids=ids,
        )
        self._from = i
        return self._rows

    def _remembered(self, i: int) -> bool:
        previous = self._run.previous
        return previous is not None and previous.lookup(self._keys[i]) is not None
