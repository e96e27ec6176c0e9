"""webhooks: stored deliveries, each service's webhook health, a changeset's last sync reason

Revision ID: 0700
Revises: 0600
"""

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0700"
down_revision = "0600"
branch_labels = None
depends_on = None

UTC = repo_updater.store.schema.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("external_services") as batch:
        batch.add_column(sa.Column("webhook_last_delivery_at", UTC(), nullable=True))
        batch.add_column(sa.Column("webhook_last_rejected_at", UTC(), nullable=True))
        batch.add_column(sa.Column("webhook_last_rejection", sa.String(200), nullable=True))
    with op.batch_alter_table("changesets") as batch:
        batch.add_column(sa.Column("last_sync_reason", sa.String(64), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_service_id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(200), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", UTC(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("claimed_until", UTC(), nullable=True),
        sa.Column("processed_at", UTC(), nullable=True),
        sa.ForeignKeyConstraint(
            ["external_service_id"], ["external_services.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_service_id", "delivery_id", name="webhook_deliveries_uq"),
    )
    op.create_index(
        "webhook_deliveries_pending_idx",
        "webhook_deliveries",
        ["id"],
        sqlite_where=sa.text("processed_at IS NULL"),
        postgresql_where=sa.text("processed_at IS NULL"),
    )
    op.create_index("webhook_deliveries_processed_idx", "webhook_deliveries", ["processed_at"])


def downgrade() -> None:
    op.drop_index("webhook_deliveries_processed_idx", table_name="webhook_deliveries")
    op.drop_index("webhook_deliveries_pending_idx", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("changesets") as batch:
        batch.drop_column("last_sync_reason")
    with op.batch_alter_table("external_services") as batch:
        batch.drop_column("webhook_last_rejection")
        batch.drop_column("webhook_last_rejected_at")
        batch.drop_column("webhook_last_delivery_at")
