"""Shared fixtures.

- ``db_url`` / ``engine`` / ``store_url``: every store-touching test runs on a real SQLite file
  and on a real PostgreSQL server (``REPO_UPDATER_TEST_PG``, default the local trust-auth
  server; ``REPO_UPDATER_TEST_BACKENDS`` picks the backends).
- ``emu`` / ``admin``: a real code-host emulator on a free loopback port, and its admin client.

Tests are grouped as ``unit`` (pure, no I/O), ``integration`` (one part against a real store or
a real emulator) and ``e2e`` (the whole app through its API, CLI or demo)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.emulator.admin_client import EmulatorAdmin
from repo_updater.emulator.server import RunningEmulator, running_emulator
from repo_updater.store.db import create_engine, migrate
from repo_updater.store.schema import metadata

PG_ADMIN_URL = os.environ.get(
    "REPO_UPDATER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = [
    b for b in os.environ.get("REPO_UPDATER_TEST_BACKENDS", "sqlite,postgresql").split(",") if b
]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, migrated once."""
    name = f"ru_test_{uuid.uuid4().hex[:10]}"
    admin = PG_ADMIN_URL.replace("postgresql://", "postgres://", 1)

    async def create() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(create())
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    async def do_migrate() -> None:
        engine = create_engine(url)
        await migrate(engine)
        await engine.dispose()

    asyncio.run(do_migrate())
    yield url
    asyncio.run(drop())


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: object) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    pg: str = request.getfixturevalue("pg_database")
    return pg


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty store."""
    eng = create_engine(db_url)
    await migrate(eng)
    if eng.dialect.name == "postgresql":
        tables = ", ".join(t.name for t in metadata.sorted_tables)
        async with eng.begin() as conn:
            await conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield eng
    await eng.dispose()


@pytest.fixture
def store_url(engine: AsyncEngine, db_url: str) -> str:
    """``db_url``, migrated and emptied (the ``engine`` fixture truncates PostgreSQL), for
    tests that build an app from a config rather than use the engine."""
    return db_url


@pytest.fixture
async def write_token(engine: AsyncEngine) -> str:
    """A write-scope API token in the store (``store_url`` / ``engine``), for API writes:
    ``Authorization: Bearer <token>``. ``tests.support.api`` has a client that sends it."""
    from tests.support.api import make_token

    return await make_token(engine)


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    """An empty code-host emulator (every host) on a free loopback port."""
    async with running_emulator() as emulator:
        yield emulator


@pytest.fixture
async def admin(emu: RunningEmulator) -> AsyncIterator[EmulatorAdmin]:
    """The emulator's admin API client (changes its state over HTTP, as a person would)."""
    async with EmulatorAdmin(emu.url) as client:
        yield client
