"""Which failures mean "the store is unreachable right now" (back off, 503) rather than a bad
statement or a bug: ``store.db.is_unavailable`` on the exceptions the drivers raise."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc as sa_exc

from repo_updater.store.db import is_unavailable


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def dbapi(
    kind: type[sa_exc.DBAPIError], orig: Exception, *, connection_invalidated: bool = False
) -> sa_exc.DBAPIError:
    return kind("SELECT 1", {}, orig, connection_invalidated=connection_invalidated)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),  # asyncpg, port closed
        (TimeoutError(), True),
        (dbapi(sa_exc.OperationalError, sqlite3.OperationalError("database is locked")), True),
        (dbapi(sa_exc.DBAPIError, _PgError("08003"), connection_invalidated=True), True),
        (dbapi(sa_exc.DBAPIError, _PgError("57P01")), True),  # admin shutdown
        (dbapi(sa_exc.DBAPIError, _PgError("53300")), True),  # too many connections
        (dbapi(sa_exc.IntegrityError, sqlite3.IntegrityError("UNIQUE constraint failed")), False),
        (dbapi(sa_exc.DBAPIError, _PgError("22P02")), False),  # invalid input: a bug
        (ValueError("x"), False),
    ],
)
def test_unreachable_store_is_told_from_a_bad_statement(
    error: BaseException, unavailable: bool
) -> None:
    assert is_unavailable(error) is unavailable
