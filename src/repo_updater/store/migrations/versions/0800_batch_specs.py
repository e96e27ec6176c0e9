"""batch specs: applied specs, per-repo spec targets, apply_spec results without a changeset

Revision ID: 0800
Revises: 0600
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

import repo_updater.store.schema

revision = "0800"
down_revision = "0700"
branch_labels = None
depends_on = None


@contextmanager
def _quiet_reflection() -> Iterator[None]:
    """SQLite's batch mode rebuilds the table and reflects the tables it refers to; the
    expression index on ``repos`` (``repos_live_name_uq``) cannot be reflected, and need not
    be (``repos`` is not rebuilt)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="Skipped unsupported reflection", category=sa.exc.SAWarning
        )
        yield


def upgrade() -> None:
    op.create_table(
        "batch_specs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_change_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", repo_updater.store.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["batch_change_id"], ["batch_changes.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("batch_specs_batch_change_idx", "batch_specs", ["batch_change_id"])
    op.create_table(
        "spec_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_change_id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("changeset_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("branch", sa.String(length=500), server_default="", nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("title", sa.Text(), server_default="", nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("draft", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at", repo_updater.store.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["batch_change_id"], ["batch_changes.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["changeset_id"], ["changesets.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("batch_change_id", "repo_id", name="spec_targets_uq"),
    )
    with _quiet_reflection(), op.batch_alter_table("bulk_operation_results") as batch:
        batch.alter_column("changeset_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("spec_target_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "bulk_operation_results_spec_target_fk",
            "spec_targets",
            ["spec_target_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    op.execute("DELETE FROM bulk_operation_results WHERE changeset_id IS NULL")
    with _quiet_reflection(), op.batch_alter_table("bulk_operation_results") as batch:
        batch.drop_constraint("bulk_operation_results_spec_target_fk", type_="foreignkey")
        batch.drop_column("spec_target_id")
        batch.alter_column("changeset_id", existing_type=sa.Integer(), nullable=False)
    op.drop_table("spec_targets")
    op.drop_index("batch_specs_batch_change_idx", table_name="batch_specs")
    op.drop_table("batch_specs")
