"""The API's response bodies as pydantic models: every JSON answer is serialised through one of
these, and ``/openapi.json`` documents exactly these, so the document and the answers agree."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from repo_updater.core.burndown import STATES
from repo_updater.core.domain import (
    BatchChangeState,
    CheckState,
    ExternalState,
    HostKind,
    PublicationState,
    ReviewState,
)
from repo_updater.core.operations import OperationKind, OperationState, ResultState


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, extra="forbid")


class Error(Out):
    error: str = Field(description="what was wrong, for a person to read")


class Health(BaseModel):
    model_config = ConfigDict(extra="allow")  # readiness details may be added
    ok: bool


class RepoOut(Out):
    id: int
    name: str
    host_kind: HostKind
    host_url: str
    external_id: str
    external_name: str
    url: str
    archived: bool
    fork: bool
    private: bool
    description: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


class RepoSyncOut(Out):
    repo: RepoOut = Field(description="the repository as stored after the sync")
    removed: bool = Field(description="the host no longer has it (or the selection dropped it)")
    archived_flipped: bool = Field(description="its archived flag changed")
    changeset_syncs_requested: int


class WebhookAnswer(Out):
    outcome: str = Field(description="stored, duplicate, ping or ignored")
    event: str
    delivery: str = Field(description="the delivery id (the host's, or the body's SHA-256)")


class EventOut(Out):
    id: int
    kind: str
    repo_id: int | None
    payload: dict[str, Any]
    created_at: datetime


class ServiceOut(Out):
    id: int
    name: str
    kind: str
    url: str
    repo_count: int
    last_sync_at: datetime | None = Field(description="the last sync, failed or not")
    last_success_at: datetime | None = Field(description="the last complete sync")
    last_sync_error: str | None
    next_sync_at: datetime | None
    sync_failures: int = Field(description="consecutive failed syncs (the backoff)")
    sync_requested_at: datetime | None = Field(description="a forced sync is due then")
    webhook_last_delivery_at: datetime | None = Field(
        None, description="when the last webhook delivery that verified arrived"
    )
    webhook_verifies: bool | None = Field(
        None, description="whether the last delivery verified (null: none arrived yet)"
    )
    webhook_last_rejection: str | None = Field(
        None, description="why the last refused delivery was refused"
    )


class ServiceSyncOut(Out):
    started_at: datetime
    finished_at: datetime
    complete: bool = Field(description="false: the listing failed; nothing was removed")
    error: str | None
    listed: int
    added: int
    modified: int
    removed: int
    archived: int = Field(description="archive flips seen, either way")


class ServiceSyncs(Out):
    service: str
    items: list[ServiceSyncOut] = Field(description="the newest syncs first (at most 50 kept)")


class BatchChangeOut(Out):
    id: int
    name: str
    description: str
    state: BatchChangeState
    created_at: datetime
    closed_at: datetime | None
    changeset_count: int


class ChangesetOut(Out):
    id: int
    repo_id: int
    repo_name: str
    number: int
    publication_state: PublicationState
    external_state: ExternalState | None = Field(description="null until the first sync")
    review_state: ReviewState | None
    check_state: CheckState | None
    title: str
    url: str
    head_ref: str
    base_ref: str
    additions: int
    deletions: int
    last_synced_at: datetime | None
    next_sync_at: datetime | None
    sync_error: str | None
    batch_change_ids: list[int]
    last_sync_reason: str | None = Field(
        None, description="why the last sync ran: its request's reason, or scheduled"
    )
    synced_by: Literal["webhook", "poll", "request"] | None = Field(
        None, description="the last sync's trigger: a webhook, polling, or a person's request"
    )


class StateChangeOut(Out):
    external_state: ExternalState
    at: datetime


class ChangesetDetail(ChangesetOut):
    state_history: list[StateChangeOut] = Field(description="the newest state changes")


class BurndownPointOut(Out):
    at: datetime
    counts: dict[str, int]


class BurndownOut(Out):
    states: list[str] = Field(
        default=list(STATES), description="every band, bottom to top; READONLY is its own"
    )
    points: list[BurndownPointOut]


class BatchChangeStats(Out):
    batch_change_id: int
    total: int
    by_state: dict[str, int] = Field(description="UNSYNCED: tracked, never synced")
    errored: int = Field(description="changesets whose last sync failed")
    by_review_state: dict[str, int] = Field(description="among OPEN and DRAFT changesets")
    by_check_state: dict[str, int] = Field(description="among OPEN and DRAFT changesets")
    burndown: BurndownOut


class Pulse(Out):
    version: str = Field(description="changes whenever the dashboard's data changes")
    states: str = Field(
        description="changes when counts or burndowns may have (a subset of `version`)"
    )
    at: datetime = Field(description="the server's time")


class ServiceSyncRequested(Out):
    requested: str
    due_at: datetime
    coalesced: bool = Field(description="true: an earlier request or a recent sync covers it")


class ChangesetSyncRequested(Out):
    requested: int
    due_at: datetime
    coalesced: bool = Field(description="true: an earlier request or a recent sync covers it")


class Tracked(Out):
    id: int
    repo: str
    number: int


class TrackedMany(Out):
    changesets: list[Tracked]


class TrackResult(RootModel[Tracked | TrackedMany]):
    pass


T = TypeVar("T", bound=Out)


class Page(Out, Generic[T]):
    items: list[T]
    next: str | None = Field(description="pass as `after` for the next page; null at the end")


class PermissionOut(Out):
    login: str = Field(description="the account's name on the host, as the host spells it")
    permission: str = Field(description="the level as the host names it")
    access: str = Field(description="read, write or admin")
    account_id: str = Field(description="the host's id of the account; empty if not given")
    granted_at: datetime
    updated_at: datetime


class PermissionRepoOut(Out):
    id: int
    name: str
    private: bool = Field(description="false: anyone can read it, no permissions are listed")


class PermissionSyncOut(Out):
    due_at: datetime = Field(description="the next permissions sync of the repo")
    reason: str
    last_synced_at: datetime | None
    failures: int = Field(description="consecutive failed syncs (the backoff)")
    last_error: str | None


class RepoPermissions(Page[PermissionOut]):
    """Who can read one repository: a page of its grants, by login ignoring case."""

    repo: PermissionRepoOut
    sync: PermissionSyncOut | None = Field(description="null: no permissions sync requested")


COMPRESS_OVER = 1024  # bytes: smaller answers are not worth a gzip header


def answer(body: BaseModel, status: int = 200) -> web.Response:
    """The JSON answer; gzip when the client accepts it and the body is large (a page of 50
    changesets is ~25 KiB, ~4 KiB compressed: what the dashboard fetches on each update)."""
    text = body.model_dump_json()
    response = web.Response(text=text, status=status, content_type="application/json")
    if len(text) > COMPRESS_OVER:
        response.enable_compression()
    return response


# --- bulk operations (the reconciler) ------------------------------------------------------------


class OperationOut(Out):
    id: int
    batch_change_id: int
    batch_change: str = Field(description="the batch change's name")
    kind: OperationKind
    args: dict[str, Any] = Field(description="merge_method, force, body, title")
    requested_by: str = Field(description="cli:<user>, api:<token name>, demo, ...")
    state: OperationState
    total: int
    pending: int
    done: int
    skipped: int
    failed: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ProgressOut(Out):
    total: int
    pending: int
    done: int
    skipped: int
    failed: int
    expected_finish: datetime | None = Field(
        description="null when finished, or before anything to estimate from"
    )
    fraction: float = Field(description="final results / total, 0..1")


class OperationStatusOut(Out):
    operation: OperationOut
    progress: ProgressOut


class OperationResultOut(Out):
    id: int
    changeset_id: int
    repo_name: str
    number: int
    state: ResultState
    detail: str = Field(description="what was done, why it was skipped, or the error")
    attempts: int
    next_attempt_at: datetime | None = Field(description="only while pending")
    finished_at: datetime | None


class OperationDetail(OperationStatusOut):
    results: Page[OperationResultOut] = Field(description="in changeset result order, paged")


class PlannedOut(Out):
    changeset: int
    repo: str
    number: int
    state: ExternalState | None = Field(description="the stored external state")
    plan: str = Field(description='what would be done, e.g. "close" or "skip: <reason>"')
    calls: list[str] = Field(description="the host calls, in order")


class OperationPreview(Out):
    plans: list[PlannedOut]
