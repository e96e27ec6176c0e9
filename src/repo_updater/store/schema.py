"""SQLAlchemy Core tables. The Alembic migrations create exactly these (tests check)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database.

    Stored as naive UTC (SQLite has no time zones; PostgreSQL ``timestamp``), returned aware.
    Comparisons in SQL then work the same on both.
    """

    impl = sa.DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - aiosqlite returns datetime via SA
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC)


external_services = sa.Table(
    "external_services",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("url", sa.String(500), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False, server_default=""),
    sa.Column("last_sync_at", UTCDateTime, nullable=True),  # the last sync, failed or not
    sa.Column("last_sync_error", sa.Text, nullable=True),
    sa.Column("last_success_at", UTCDateTime, nullable=True),  # the last complete sync
    sa.Column("next_sync_at", UTCDateTime, nullable=True),
    # consecutive failed syncs (backoff) and unchanged complete syncs (idle): core.schedule
    sa.Column("sync_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("unchanged_syncs", sa.Integer, nullable=False, server_default="0"),
    # A forced sync asked for (API) and not yet started: due at this time, whatever
    # ``next_sync_at`` says. Cleared by the first sync that starts at or after it.
    sa.Column("sync_requested_at", UTCDateTime, nullable=True),
    # A repo sync of this service is under way by ``claimed_by`` until ``claimed_until``.
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    # Webhooks (migration 0700): the last delivery that verified, the last one refused and why.
    sa.Column("webhook_last_delivery_at", UTCDateTime, nullable=True),
    sa.Column("webhook_last_rejected_at", UTCDateTime, nullable=True),
    sa.Column("webhook_last_rejection", sa.String(200), nullable=True),
    # Grows in every transaction that changes what the repo syncer reads for this service
    # (a linked repo's row, or its links): ``store.repos`` bumps it in each write. The syncer
    # trusts a page it read unchanged before only while this did not move (issue 12, item 4).
    sa.Column("repos_version", sa.BigInteger, nullable=False, server_default="0"),
)

repos = sa.Table(
    "repos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("host_kind", sa.String(32), nullable=False),  # HostKind
    sa.Column("host_url", sa.String(500), nullable=False),  # the code host's base URL
    sa.Column("external_id", sa.String(200), nullable=False),
    sa.Column("external_name", sa.String(500), nullable=False),  # host-relative full name
    sa.Column("url", sa.String(1000), nullable=False, server_default=""),
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Column("fork", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Column("private", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("host_kind", "host_url", "external_id", name="repos_external_uq"),
)
# Live repo names are unique, ignoring case as the code hosts do; deleted ones keep their
# name for history.
sa.Index(
    "repos_live_name_uq",
    sa.func.lower(repos.c.name),
    unique=True,
    sqlite_where=repos.c.deleted_at.is_(None),
    postgresql_where=repos.c.deleted_at.is_(None),
)

external_service_repos = sa.Table(
    "external_service_repos",
    metadata,
    sa.Column(
        "external_service_id",
        sa.Integer,
        sa.ForeignKey("external_services.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("clone_url", sa.String(1000), nullable=False, server_default=""),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
sa.Index("external_service_repos_repo_idx", external_service_repos.c.repo_id)

# Outbox: one row per domain event, written in the same transaction as the change it reports.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),  # RepoAdded, RepoArchived, ...
    sa.Column("repo_id", sa.Integer, nullable=True),
    sa.Column("external_service_id", sa.Integer, nullable=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
sa.Index("events_kind_idx", events.c.kind, events.c.id)
sa.Index("events_created_idx", events.c.created_at)  # retention prunes by age

# The next permissions sync of each private repo: one row per repo at most (duplicates
# collapse). ``requested_at`` is when it is due: now for a change (repo added, made private, its
# owner changed), the refresh time once synced (``priority`` 1: changes go first), the retry
# time after a failure. ``generation`` grows when a request arrives for a row already there, so
# a worker finishing a sync reschedules only the request it claimed, never one that arrived
# while it worked. ``last_synced_at`` / ``failures`` / ``last_error`` say how the last went.
permission_sync_requests = sa.Table(
    "permission_sync_requests",
    metadata,
    sa.Column(
        "repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("claimed_generation", sa.Integer, nullable=True),
    sa.Column("last_synced_at", UTCDateTime, nullable=True),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
)
sa.Index(
    "permission_sync_requests_due_idx",
    permission_sync_requests.c.priority,
    permission_sync_requests.c.requested_at,
)

# Who can read each private repo: one row per (repo, account on its host). ``account_key`` is
# the login lower-cased (hosts compare logins ignoring case), ``login`` as the host spells it,
# ``permission`` the level as the host names it, ``access`` read / write / admin.
repo_permissions = sa.Table(
    "repo_permissions",
    metadata,
    sa.Column(
        "repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("account_key", sa.String(255), primary_key=True),
    sa.Column("login", sa.String(255), nullable=False),
    sa.Column("account_id", sa.String(64), nullable=False, server_default=""),
    sa.Column("permission", sa.String(64), nullable=False),
    sa.Column("access", sa.String(16), nullable=False),
    sa.Column("granted_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
sa.Index("repo_permissions_account_idx", repo_permissions.c.account_key)

batch_changes = sa.Table(
    "batch_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),  # BatchChangeState
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("closed_at", UTCDateTime, nullable=True),
)

changesets = sa.Table(
    "changesets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("external_id", sa.String(64), nullable=False),  # PR / MR number on the repo
    sa.Column("publication_state", sa.String(16), nullable=False),
    sa.Column("external_state", sa.String(16), nullable=True),  # derived (READONLY...)
    sa.Column("host_state", sa.String(16), nullable=True),  # what the host last said
    sa.Column("review_state", sa.String(32), nullable=True),
    sa.Column("check_state", sa.String(16), nullable=True),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("url", sa.String(1000), nullable=False, server_default=""),
    sa.Column("head_ref", sa.String(500), nullable=False, server_default=""),
    sa.Column("base_ref", sa.String(500), nullable=False, server_default=""),
    sa.Column("additions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deletions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("external_updated_at", UTCDateTime, nullable=True),
    sa.Column("last_synced_at", UTCDateTime, nullable=True),
    sa.Column("next_sync_at", UTCDateTime, nullable=True),
    sa.Column("sync_error", sa.Text, nullable=True),
    # Why the last successful sync ran: the request's reason (``webhook:...`` when a webhook
    # asked for it), or ``scheduled`` (migration 0700).
    sa.Column("last_sync_reason", sa.String(64), nullable=True),
    # consecutive failed syncs; drives the retry backoff, reset by a successful sync
    sa.Column("sync_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("repo_id", "external_id", name="changesets_repo_external_uq"),
    # Room on each page for the claim's update to stay there (HOT: no new index entries).
    postgresql_with={"fillfactor": 80},
)
sa.Index("changesets_next_sync_idx", changesets.c.next_sync_at, changesets.c.id)  # claim order

batch_change_changesets = sa.Table(
    "batch_change_changesets",
    metadata,
    sa.Column(
        "batch_change_id",
        sa.Integer,
        sa.ForeignKey("batch_changes.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "changeset_id",
        sa.Integer,
        sa.ForeignKey("changesets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
)
sa.Index("batch_change_changesets_cs_idx", batch_change_changesets.c.changeset_id)

changeset_events = sa.Table(
    "changeset_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "changeset_id",
        sa.Integer,
        sa.ForeignKey("changesets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False, server_default=""),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.UniqueConstraint("changeset_id", "kind", "at", "actor", name="changeset_events_uq"),
)

# Requested changeset syncs: one row per changeset at most. ``generation`` grows when a request
# arrives for a row already there; a claim reads the generation (it never writes the row), so a
# worker that finishes a sync only deletes the request it saw, never one that arrived while it
# worked (a request is never dropped). A failed sync parks the request until its retry time:
# ``claimed_until``, with ``claimed_generation`` the generation parked (a newer one is ready).
changeset_sync_requests = sa.Table(
    "changeset_sync_requests",
    metadata,
    sa.Column(
        "changeset_id",
        sa.Integer,
        sa.ForeignKey("changesets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("claimed_generation", sa.Integer, nullable=True),
)
# The claim walks ready requests in (requested_at, changeset_id) order: one index serves both
# the filter-free walk and its tie-break, so claiming 200 of 100,000 stops after 200 rows.
sa.Index(
    "changeset_sync_requests_requested_idx",
    changeset_sync_requests.c.requested_at,
    changeset_sync_requests.c.changeset_id,
)

# One row each time a changeset's external state changes (its first sync included), written in
# the same transaction as the change by ``store.changesets.rederive``, the one function that sets
# ``external_state``. The burndown of a batch change is computed from it.
changeset_state_history = sa.Table(
    "changeset_state_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "changeset_id",
        sa.Integer,
        sa.ForeignKey("changesets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("external_state", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
)
sa.Index(
    "changeset_state_history_cs_idx",
    changeset_state_history.c.changeset_id,
    changeset_state_history.c.at,
)

# The recent repo syncs of each external service (the dashboard's services page), one row per
# finished sync, written with the service's sync status; the newest ``sync_history.KEEP`` per
# service are kept.
service_sync_history = sa.Table(
    "service_sync_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "external_service_id",
        sa.Integer,
        sa.ForeignKey("external_services.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("listed", sa.Integer, nullable=False),
    sa.Column("added", sa.Integer, nullable=False),
    sa.Column("modified", sa.Integer, nullable=False),
    sa.Column("removed", sa.Integer, nullable=False),
    sa.Column("archived", sa.Integer, nullable=False),  # archive flips, either way
)
sa.Index(
    "service_sync_history_svc_idx",
    service_sync_history.c.external_service_id,
    service_sync_history.c.id,
)

# API tokens: only a SHA-256 of each token is kept (the tokens are 256-bit random strings, so a
# fast hash is enough); the token itself is shown once, when it is created.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("scope", sa.String(8), nullable=False),  # read | write
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

# --- bulk operations (the reconciler) ------------------------------------------------------------
# One row per operation a user asked for ("close these 1,000 changesets"). Its changesets are
# grouped by repository (``bulk_operation_repos``): a group is what a worker claims, so one
# repo's writes of one operation run in one place, one after the other, and a repo found
# archived stops its group at once. One result row per changeset says what became of it.
bulk_operations = sa.Table(
    "bulk_operations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "batch_change_id",
        sa.Integer,
        sa.ForeignKey("batch_changes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(32), nullable=False),  # OperationKind
    sa.Column("args", sa.JSON, nullable=False),  # OperationArgs.to_json()
    sa.Column("requested_by", sa.String(200), nullable=False, server_default=""),
    sa.Column("state", sa.String(16), nullable=False),  # OperationState
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=True),  # first attempt of any result
    sa.Column("finished_at", UTCDateTime, nullable=True),
)
sa.Index("bulk_operations_batch_change_idx", bulk_operations.c.batch_change_id)

bulk_operation_repos = sa.Table(
    "bulk_operation_repos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "operation_id",
        sa.Integer,
        sa.ForeignKey("bulk_operations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    # When the group's next pending result may run; NULL once none is pending.
    sa.Column("next_attempt_at", UTCDateTime, nullable=True),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.UniqueConstraint("operation_id", "repo_id", name="bulk_operation_repos_uq"),
)
sa.Index("bulk_operation_repos_next_idx", bulk_operation_repos.c.next_attempt_at)

# --- batch specs (``batch-changes apply``) --------------------------------------------------------
# Each applied spec, kept (an operation names the one it applies), and per (batch change, repo)
# what the applies put on the host: the digest of the commit on the branch, the pull request
# (a tracked changeset) with the title, body and draft flag it was given. A re-apply compares
# with these and writes only what differs. ``state``: active, closed (no longer matched, its
# changeset closed) or detached (no longer matched, left open and no longer tracked).
batch_specs = sa.Table(
    "batch_specs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "batch_change_id",
        sa.Integer,
        sa.ForeignKey("batch_changes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)
sa.Index("batch_specs_batch_change_idx", batch_specs.c.batch_change_id)
spec_targets = sa.Table(
    "spec_targets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "batch_change_id",
        sa.Integer,
        sa.ForeignKey("batch_changes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("repo_id", sa.Integer, sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "changeset_id",
        sa.Integer,
        sa.ForeignKey("changesets.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),
    sa.Column("branch", sa.String(500), nullable=False, server_default=""),
    sa.Column("digest", sa.String(64), nullable=True),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("body", sa.Text, nullable=False, server_default=""),
    sa.Column("draft", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("batch_change_id", "repo_id", name="spec_targets_uq"),
)
bulk_operation_results = sa.Table(
    "bulk_operation_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "operation_id",
        sa.Integer,
        sa.ForeignKey("bulk_operations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "group_id",
        sa.Integer,
        sa.ForeignKey("bulk_operation_repos.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # NULL for an apply_spec result (its repo may have no changeset yet): see spec_target_id
    sa.Column(
        "changeset_id",
        sa.Integer,
        sa.ForeignKey("changesets.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column(
        "spec_target_id",
        sa.Integer,
        sa.ForeignKey("spec_targets.id", ondelete="CASCADE"),
        nullable=True,
    ),
    sa.Column("state", sa.String(16), nullable=False),  # ResultState
    sa.Column("detail", sa.Text, nullable=False, server_default=""),  # what was done, or why not
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    # Set (committed) before the first write of an attempt: a write may have reached the host,
    # so the next attempt looks at the host before it writes again.
    sa.Column("write_started_at", UTCDateTime, nullable=True),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("operation_id", "changeset_id", name="bulk_operation_results_uq"),
)
sa.Index(
    "bulk_operation_results_op_state_idx",
    bulk_operation_results.c.operation_id,
    bulk_operation_results.c.state,
)
sa.Index(
    "bulk_operation_results_group_idx",
    bulk_operation_results.c.group_id,
    bulk_operation_results.c.id,
)

# Write budgets, one row per code host, shared by every worker process: token buckets for the
# host's content-creation limits and the end of a pause a rate limit asked for (core.pacing).
host_write_budgets = sa.Table(
    "host_write_budgets",
    metadata,
    sa.Column("host_kind", sa.String(32), primary_key=True),
    sa.Column("host_url", sa.String(500), primary_key=True),
    # {"<window seconds>": [tokens, "<refilled at, ISO 8601>"], ...}
    sa.Column("buckets", sa.JSON, nullable=False),
    sa.Column("paused_until", UTCDateTime, nullable=True),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Webhook deliveries (migration 0700): stored once verified, before the 2xx; a worker claims
# unprocessed ones (``claimed_by`` / ``claimed_until``, a lease; a failed attempt parks the row
# until ``claimed_until``) and sets ``processed_at``. ``(external_service_id, delivery_id)`` is
# unique: a redelivery is a no-op.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "external_service_id",
        sa.Integer,
        sa.ForeignKey("external_services.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("delivery_id", sa.String(200), nullable=False),
    sa.Column("event", sa.String(100), nullable=False),
    sa.Column("headers", sa.JSON, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("claimed_by", sa.String(200), nullable=True),
    sa.Column("claimed_until", UTCDateTime, nullable=True),
    sa.Column("processed_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("external_service_id", "delivery_id", name="webhook_deliveries_uq"),
)
sa.Index(
    "webhook_deliveries_pending_idx",
    webhook_deliveries.c.id,
    sqlite_where=webhook_deliveries.c.processed_at.is_(None),
    postgresql_where=webhook_deliveries.c.processed_at.is_(None),
)
sa.Index("webhook_deliveries_processed_idx", webhook_deliveries.c.processed_at)
