"""API tokens: create one (shown once), check a presented one, list and revoke them.

A token is ``rut_`` and 43 URL-safe characters (256 random bits). Only its SHA-256 is stored:
for a secret with that much entropy a fast hash is as good as a slow one (nobody can guess
through 2**256), and it lets a request find its token by an indexed lookup. The digest found is
compared again with ``hmac.compare_digest``; any timing the lookup leaks is about the digest,
which tells nothing about the token.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from repo_updater.store import api_tokens as token_store

TOKEN_PREFIX = "rut_"
MAX_TOKEN_LENGTH = 200  # anything longer is not one of ours; do not even hash it
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Scope(enum.StrEnum):
    READ = "read"
    WRITE = "write"  # implies read

    def allows(self, needed: Scope) -> bool:
        return self is Scope.WRITE or needed is Scope.READ


class TokenNameError(ValueError):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise TokenNameError(
            f"token name {name!r} is invalid: use 1-64 letters, digits, '.', '_' or '-'"
        )
    return name


async def create_token(conn: AsyncConnection, name: str, scope: Scope, now: datetime) -> str:
    """Create a token and return it: the only time it is ever available."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await token_store.add_token(conn, check_name(name), scope.value, digest(token), now)
    return token


@dataclass(frozen=True, slots=True)
class TokenHolder:
    """Who presented a live token: its name (never the token) and scope."""

    name: str
    scope: Scope


async def authenticate(conn: AsyncConnection, presented: str) -> Scope | None:
    """The scope of a presented token; None if it is not a live token."""
    holder = await identify(conn, presented)
    return None if holder is None else holder.scope


async def identify(conn: AsyncConnection, presented: str) -> TokenHolder | None:
    """The name and scope of a presented token; None if it is not a live token."""
    if not presented.isascii() or not 0 < len(presented) <= MAX_TOKEN_LENGTH:
        return None
    wanted = digest(presented)
    found = await token_store.by_digest(conn, wanted)
    if found is None or not hmac.compare_digest(found[2], wanted):
        return None
    return TokenHolder(found[0], Scope(found[1]))


async def any_token(conn: AsyncConnection) -> bool:
    return await token_store.count_tokens(conn) > 0
