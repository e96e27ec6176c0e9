"""bulk operations: operations, their per-repo groups and per-changeset results; host write
budgets

The reconciler's durable state (see store/schema.py): ``bulk_operations`` (one per request),
``bulk_operation_repos`` (one operation's changesets on one repo: what a worker claims),
``bulk_operation_results`` (one per changeset), and ``host_write_budgets`` (token buckets and
Retry-After pauses per code host, shared by every worker process). New tables only.

Revision ID: 0400
Revises: 0200
"""

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0400"
down_revision = "0200"
branch_labels = None
depends_on = None

UTC = repo_updater.store.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "bulk_operations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_change_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("requested_by", sa.String(length=200), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC(), nullable=False),
        sa.Column("started_at", UTC(), nullable=True),
        sa.Column("finished_at", UTC(), nullable=True),
        sa.ForeignKeyConstraint(["batch_change_id"], ["batch_changes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("bulk_operations_batch_change_idx", "bulk_operations", ["batch_change_id"])
    op.create_table(
        "bulk_operation_repos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_until", UTC(), nullable=True),
        sa.ForeignKeyConstraint(["operation_id"], ["bulk_operations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operation_id", "repo_id", name="bulk_operation_repos_uq"),
    )
    op.create_index(
        "bulk_operation_repos_next_idx", "bulk_operation_repos", ["next_attempt_at"]
    )
    op.create_table(
        "bulk_operation_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("operation_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("changeset_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", UTC(), nullable=False),
        sa.Column("write_started_at", UTC(), nullable=True),
        sa.Column("finished_at", UTC(), nullable=True),
        sa.ForeignKeyConstraint(["operation_id"], ["bulk_operations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["group_id"], ["bulk_operation_repos.id"], ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["changeset_id"], ["changesets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("operation_id", "changeset_id", name="bulk_operation_results_uq"),
    )
    op.create_index(
        "bulk_operation_results_op_state_idx",
        "bulk_operation_results",
        ["operation_id", "state"],
    )
    op.create_index(
        "bulk_operation_results_group_idx", "bulk_operation_results", ["group_id", "id"]
    )
    op.create_table(
        "host_write_budgets",
        sa.Column("host_kind", sa.String(length=32), nullable=False),
        sa.Column("host_url", sa.String(length=500), nullable=False),
        sa.Column("buckets", sa.JSON(), nullable=False),
        sa.Column("paused_until", UTC(), nullable=True),
        sa.Column("updated_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("host_kind", "host_url"),
    )


def downgrade() -> None:
    op.drop_table("host_write_budgets")
    op.drop_index("bulk_operation_results_group_idx", table_name="bulk_operation_results")
    op.drop_index("bulk_operation_results_op_state_idx", table_name="bulk_operation_results")
    op.drop_table("bulk_operation_results")
    op.drop_index("bulk_operation_repos_next_idx", table_name="bulk_operation_repos")
    op.drop_table("bulk_operation_repos")
    op.drop_index("bulk_operations_batch_change_idx", table_name="bulk_operations")
    op.drop_table("bulk_operations")
