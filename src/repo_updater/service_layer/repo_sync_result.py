"""What one repo sync reports (``SyncResult``, ``SyncProgress``) and the state one run of
``repo_syncer.RepoSyncer.sync`` carries from page to page (``SyncRun``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from repo_updater.core import diff as d
from repo_updater.core.ports import RepoSource
from repo_updater.service_layer.page_memo import PageMemo


@dataclass(slots=True)
class SyncProgress:
    service: str
    pages: int = 0
    listed: int = 0


@dataclass(slots=True)
class SyncResult:
    service: str
    complete: bool = False
    error: str | None = None
    error_reason: str | None = None  # core.errors.reason: a fixed label (metrics)
    pages: int = 0
    listed: int = 0
    duplicates: int = 0
    added: int = 0
    modified: int = 0
    unmodified: int = 0
    removed: int = 0
    revived: int = 0
    renamed: int = 0
    name_conflicts: int = 0
    archived: list[str] = field(default_factory=list)
    unarchived: list[str] = field(default_factory=list)
    changeset_syncs_requested: int = 0
    retry_after: float | None = None  # seconds: the host rate-limited the listing
    permission_syncs_requested: int = 0
    rechecked: int = 0  # unseen repos listed a second time before removal
    rows_written: int = 0  # repo, link and event rows inserted or updated

    @property
    def changed_anything(self) -> bool:
        return bool(self.rows_written) or not self.complete

    def summary(self) -> str:
        state = "complete" if self.complete else f"INCOMPLETE ({self.error})"
        return (
            f"{self.service}: {state}; listed {self.listed} in {self.pages} pages; "
            f"added {self.added}, modified {self.modified}, unmodified {self.unmodified}, "
            f"removed {self.removed}, archived {len(self.archived)}, "
            f"unarchived {len(self.unarchived)}, renamed {self.renamed}; "
            f"changeset syncs requested {self.changeset_syncs_requested}"
        )


ProgressCallback = Callable[[SyncProgress], None]


@dataclass(slots=True)
class SyncRun:
    """One sync of one external service: what every page of it needs."""

    service: str  # the external service's name
    external_service_id: int
    source: RepoSource
    seen: d.SeenIds
    result: SyncResult
    memo: PageMemo  # this sync's unchanged pages (``page_memo``)
    previous: PageMemo | None = None  # the last sync's, while the repos version holds
    via: str = ""  # how the change was learned, when not by a listing (``webhook``)
    # Try the next group as one that only adds repos (``added_groups``): true at the start and
    # while the groups written were pure additions (a first sync).
    all_added: bool = True
