"""repos: service_type, service_id -> host_kind, host_url

"service_id" meant the code host's base URL here and an external service's integer key
elsewhere; the columns now say what they hold. RENAME COLUMN keeps every index and constraint
on PostgreSQL and on SQLite (3.25+), with no table copy.

Revision ID: 0002
Revises: 1a9b82b178d3
"""

from alembic import op

revision = "0002"
down_revision = "1a9b82b178d3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE repos RENAME COLUMN service_type TO host_kind")
    op.execute("ALTER TABLE repos RENAME COLUMN service_id TO host_url")


def downgrade() -> None:
    op.execute("ALTER TABLE repos RENAME COLUMN host_kind TO service_type")
    op.execute("ALTER TABLE repos RENAME COLUMN host_url TO service_id")
