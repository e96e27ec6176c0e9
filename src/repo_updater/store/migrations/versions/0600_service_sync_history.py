"""service_sync_history: the recent repo syncs of each service (the dashboard's services page)

Revision ID: 0600
Revises: 0500
"""

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0600"
down_revision = "0500"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_sync_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_service_id", sa.Integer(), nullable=False),
        sa.Column("started_at", repo_updater.store.schema.UTCDateTime(), nullable=False),
        sa.Column("finished_at", repo_updater.store.schema.UTCDateTime(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("added", sa.Integer(), nullable=False),
        sa.Column("modified", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("archived", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["external_service_id"], ["external_services.id"], ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "service_sync_history_svc_idx",
        "service_sync_history",
        ["external_service_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("service_sync_history_svc_idx", table_name="service_sync_history")
    op.drop_table("service_sync_history")
