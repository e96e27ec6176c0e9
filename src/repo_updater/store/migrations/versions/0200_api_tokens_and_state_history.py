"""api_tokens; changeset_state_history (backfilled with each synced changeset's current state);
external_services.sync_requested_at (forced syncs)

Revision ID: 0200
Revises: 0100
"""

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0200"
down_revision = "0100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (nullable, no default) needs no table copy on SQLite.
    op.add_column(
        "external_services",
        sa.Column("sync_requested_at", repo_updater.store.schema.UTCDateTime(), nullable=True),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", repo_updater.store.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_table(
        "changeset_state_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("changeset_id", sa.Integer(), nullable=False),
        sa.Column("external_state", sa.String(length=16), nullable=False),
        sa.Column("at", repo_updater.store.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["changeset_id"], ["changesets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "changeset_state_history_cs_idx",
        "changeset_state_history",
        ["changeset_id", "at"],
        unique=False,
    )
    # The burndown starts from what is known: each synced changeset's current state since its
    # last sync (or its creation if it never recorded one).
    op.execute(
        "INSERT INTO changeset_state_history (changeset_id, external_state, at) "
        "SELECT id, external_state, COALESCE(last_synced_at, created_at) FROM changesets "
        "WHERE external_state IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("changeset_state_history_cs_idx", table_name="changeset_state_history")
    op.drop_table("changeset_state_history")
    op.drop_table("api_tokens")
    with op.batch_alter_table("external_services") as batch_op:
        batch_op.drop_column("sync_requested_at")
