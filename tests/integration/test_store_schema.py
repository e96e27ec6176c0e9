from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.store.db import DatabaseURLError, async_url, migrate
from repo_updater.store.schema import metadata, repos


async def test_migrations_create_every_table_of_the_schema(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
    assert {t.name for t in metadata.sorted_tables} <= names


async def test_migrate_twice_is_a_no_op(engine: AsyncEngine) -> None:
    await migrate(engine)
    async with engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(repos))).scalar_one()
    assert count == 0


async def test_datetimes_round_trip_as_aware_utc(engine: AsyncEngine) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(
            repos.insert().values(
                name="h/a/b",
                external_name="a/b",
                host_kind="github",
                host_url="h",
                external_id="1",
                created_at=now,
                updated_at=now,
            )
        )
        got = (await conn.execute(sa.select(repos.c.created_at))).scalar_one()
    assert got == now and got.tzinfo is not None


def test_unsupported_database_url_is_a_clear_error() -> None:
    with pytest.raises(DatabaseURLError, match="unsupported backend 'mysql'"):
        async_url("mysql://root@localhost/db")


async def test_migrations_build_exactly_the_schema(engine: AsyncEngine) -> None:
    """Alembic's autogenerate finds nothing to do: every table, column, index and constraint
    of ``schema.py`` is what the migrations created (a missing migration fails here)."""
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(sync_conn: sa.Connection) -> list[object]:
        context = MigrationContext.configure(sync_conn)
        with warnings.catch_warnings():
            # Expression indexes (lower(name)) cannot be reflected; they are compared by name
            # in the next test instead.
            warnings.filterwarnings("ignore", message=".*expression-based index.*")
            warnings.filterwarnings("ignore", message=".*Skipped unsupported reflection.*")
            return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        changes = await conn.run_sync(diff)
    relevant = [c for c in changes if "repos_live_name_uq" not in repr(c)]
    assert relevant == [], relevant


async def test_the_live_name_index_exists(engine: AsyncEngine) -> None:
    """The expression index that keeps live names unique ignoring case (not reflectable)."""
    if engine.dialect.name == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'index'"
    else:
        query = "SELECT indexname FROM pg_indexes WHERE tablename = 'repos'"
    async with engine.connect() as conn:
        names = {r[0] for r in await conn.execute(sa.text(query))}
    assert "repos_live_name_uq" in names


async def test_postgresql_changesets_leave_room_for_in_place_claims(engine: AsyncEngine) -> None:
    """The claim's update of a changeset stays on its page (HOT) only if the page has room:
    migrations set the fillfactor that ``schema.py`` declares."""
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL storage parameter")
    query = "SELECT reloptions FROM pg_class WHERE relname = 'changesets'"
    async with engine.connect() as conn:
        options = (await conn.execute(sa.text(query))).scalar_one()
    declared = metadata.tables["changesets"].dialect_options["postgresql"]["with"]
    assert options == [f"fillfactor={declared['fillfactor']}"] == ["fillfactor=80"]
