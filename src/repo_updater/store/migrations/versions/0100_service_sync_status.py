"""external_services: last_success_at, sync_failures, unchanged_syncs; events by age

``last_sync_at`` is any sync, failed or not; ``last_success_at`` the last complete one, so a
service failing for days no longer looks fresh. The two counters drive the service's backoff
(``core.schedule.next_service_sync_at``). The index on ``events.created_at`` serves the
retention's pruning by age.

Revision ID: 0100
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0100"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("external_services") as batch:
        batch.add_column(
            sa.Column("last_success_at", repo_updater.store.schema.UTCDateTime(), nullable=True)
        )
        batch.add_column(
            sa.Column("sync_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("unchanged_syncs", sa.Integer(), nullable=False, server_default="0")
        )
    # Services that synced without an error before this revision: their last sync succeeded.
    op.execute(
        "UPDATE external_services SET last_success_at = last_sync_at "
        "WHERE last_sync_error IS NULL"
    )
    op.create_index("events_created_idx", "events", ["created_at"])


def downgrade() -> None:
    op.drop_index("events_created_idx", table_name="events")
    with op.batch_alter_table("external_services") as batch:
        batch.drop_column("unchanged_syncs")
        batch.drop_column("sync_failures")
        batch.drop_column("last_success_at")
