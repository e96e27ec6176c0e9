"""API tokens: names, scopes and SHA-256 digests (never the tokens themselves)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.store.schema import api_tokens
from repo_updater.store.sql import dialect_insert


class TokenExists(ValueError):
    """A token with that name exists already."""


class TokenNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class TokenInfo:
    name: str
    scope: str
    created_at: datetime


async def add_token(
    conn: AsyncConnection, name: str, scope: str, digest: str, now: datetime
) -> None:
    stmt = (
        dialect_insert(conn, api_tokens)
        .values(name=name, scope=scope, token_sha256=digest, created_at=now)
        .on_conflict_do_nothing(index_elements=[api_tokens.c.name])
        .returning(api_tokens.c.id)
    )
    if (await conn.execute(stmt)).scalar_one_or_none() is None:
        raise TokenExists(f"a token named {name!r} exists already; revoke it first")


async def scope_and_digest(conn: AsyncConnection, digest: str) -> tuple[str, str] | None:
    """The scope and stored digest of the token with this digest, if there is one."""
    found = await by_digest(conn, digest)
    return None if found is None else (found[1], found[2])


async def by_digest(conn: AsyncConnection, digest: str) -> tuple[str, str, str] | None:
    """The name, scope and stored digest of the token with this digest, if there is one."""
    row = (
        await conn.execute(
            sa.select(api_tokens.c.name, api_tokens.c.scope, api_tokens.c.token_sha256).where(
                api_tokens.c.token_sha256 == digest
            )
        )
    ).first()
    return None if row is None else (row.name, row.scope, row.token_sha256)


async def list_tokens(conn: AsyncConnection) -> list[TokenInfo]:
    rows = await conn.execute(
        sa.select(api_tokens.c.name, api_tokens.c.scope, api_tokens.c.created_at).order_by(
            api_tokens.c.name
        )
    )
    return [TokenInfo(r.name, r.scope, r.created_at) for r in rows]


async def count_tokens(conn: AsyncConnection) -> int:
    count = await conn.execute(sa.select(sa.func.count()).select_from(api_tokens))
    return int(count.scalar_one())


async def delete_token(conn: AsyncConnection, name: str) -> None:
    result = await conn.execute(api_tokens.delete().where(api_tokens.c.name == name))
    if result.rowcount == 0:
        raise TokenNotFound(f"no token named {name!r}")
