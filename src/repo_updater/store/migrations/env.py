"""Alembic environment: runs on the connection handed in by ``repo_updater.store.db.migrate``."""

from __future__ import annotations

from alembic import context

from repo_updater.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only used through migrate()
    raise RuntimeError("run migrations through repo_updater.store.db.migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
