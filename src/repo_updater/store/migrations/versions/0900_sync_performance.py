"""sync performance: claim-order indexes, the per-service repos version (issue 12)

- ``changeset_sync_requests_requested_idx`` on (requested_at, changeset_id) and
  ``changesets_next_sync_idx`` on (next_sync_at, id): the claim's two selects walk an index in
  their ORDER BY and stop after LIMIT rows instead of sorting every candidate.
- ``external_services.repos_version``: bumped by every write of a service's repos or links,
  so the repo syncer can skip the store read of a page it saw unchanged before.

Revision ID: 0900
Revises: 0600
"""

import sqlalchemy as sa
from alembic import op

revision = "0900"
down_revision = "0800"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("changeset_sync_requests_requested_idx", table_name="changeset_sync_requests")
    op.create_index(
        "changeset_sync_requests_requested_idx",
        "changeset_sync_requests",
        ["requested_at", "changeset_id"],
    )
    op.drop_index("changesets_next_sync_idx", table_name="changesets")
    op.create_index("changesets_next_sync_idx", "changesets", ["next_sync_at", "id"])
    op.add_column(
        "external_services",
        sa.Column("repos_version", sa.BigInteger(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("external_services") as batch:
        batch.drop_column("repos_version")
    op.drop_index("changesets_next_sync_idx", table_name="changesets")
    op.create_index("changesets_next_sync_idx", "changesets", ["next_sync_at"])
    op.drop_index("changeset_sync_requests_requested_idx", table_name="changeset_sync_requests")
    op.create_index(
        "changeset_sync_requests_requested_idx", "changeset_sync_requests", ["requested_at"]
    )
