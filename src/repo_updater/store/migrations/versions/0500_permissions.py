"""permissions: claimable, schedulable permission_sync_requests; repo_permissions

``permission_sync_requests`` becomes each private repo's next permissions sync: priority,
generation and claim columns (as ``changeset_sync_requests`` has), and how the last sync went.
``repo_permissions`` holds who can read each private repo.

Data: requests written so far were for every added or modified repo, public ones too, and
nothing consumed them. Public and deleted repos lose theirs; every live private repo gets one
(reason ``migrated``, due now), so the first permissions sync after the upgrade covers them all.

Revision ID: 0500
Revises: 0400
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0500"
down_revision = "0400"
branch_labels = None
depends_on = None

UTC_DT = repo_updater.store.schema.UTCDateTime()


def upgrade() -> None:
    with op.batch_alter_table("permission_sync_requests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), server_default="1", nullable=False)
        )
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", UTC_DT, nullable=True))
        batch_op.add_column(sa.Column("claimed_generation", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_synced_at", UTC_DT, nullable=True))
        batch_op.add_column(
            sa.Column("failures", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.create_index(
            "permission_sync_requests_due_idx", ["priority", "requested_at"], unique=False
        )

    op.create_table(
        "repo_permissions",
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("account_key", sa.String(length=255), nullable=False),
        sa.Column("login", sa.String(length=255), nullable=False),
        sa.Column("account_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("permission", sa.String(length=64), nullable=False),
        sa.Column("access", sa.String(length=16), nullable=False),
        sa.Column("granted_at", UTC_DT, nullable=False),
        sa.Column("updated_at", UTC_DT, nullable=False),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("repo_id", "account_key"),
    )
    with op.batch_alter_table("repo_permissions", schema=None) as batch_op:
        batch_op.create_index("repo_permissions_account_idx", ["account_key"], unique=False)

    repos = sa.table(
        "repos",
        sa.column("id", sa.Integer),
        sa.column("private", sa.Boolean),
        sa.column("deleted_at", UTC_DT),
    )
    requests = sa.table(
        "permission_sync_requests",
        sa.column("repo_id", sa.Integer),
        sa.column("reason", sa.String),
        sa.column("requested_at", UTC_DT),
    )
    live_private = sa.and_(repos.c.private.is_(True), repos.c.deleted_at.is_(None))
    op.execute(
        requests.delete().where(
            requests.c.repo_id.not_in(sa.select(repos.c.id).where(live_private))
        )
    )
    missing = sa.select(
        repos.c.id, sa.literal("migrated", sa.String), sa.literal(datetime.now(UTC), UTC_DT)
    ).where(live_private, repos.c.id.not_in(sa.select(requests.c.repo_id)))
    op.execute(requests.insert().from_select(["repo_id", "reason", "requested_at"], missing))


def downgrade() -> None:
    with op.batch_alter_table("repo_permissions", schema=None) as batch_op:
        batch_op.drop_index("repo_permissions_account_idx")
    op.drop_table("repo_permissions")
    with op.batch_alter_table("permission_sync_requests", schema=None) as batch_op:
        batch_op.drop_index("permission_sync_requests_due_idx")
        for column in (
            "last_error",
            "failures",
            "last_synced_at",
            "claimed_generation",
            "claimed_until",
            "claimed_by",
            "generation",
            "priority",
        ):
            batch_op.drop_column(column)
