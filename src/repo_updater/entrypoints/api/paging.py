"""Cursor paging: every list answers ``{"items": [...], "next": cursor-or-null}``; pass ``next``
as ``after`` for the following page. A cursor is opaque to clients: the last item's key
(``"123"``, or ``"rank.id"`` where the order has a rank, or a text key base64url-encoded where
the order is by name: ``key_cursor``). Keyset paging, so a page costs the
same however deep it is, and rows added meanwhile are neither skipped nor repeated."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import TypeVar

from repo_updater.core.domain import MAX_INT
from repo_updater.entrypoints.api.inputs import BadRequest

T = TypeVar("T")


def after_id(cursor: str | None) -> int:
    """The id a plain (id-ordered) cursor stands for; 0 without one."""
    if cursor is None:
        return 0
    if "." in cursor:
        raise BadRequest("query parameter 'after': this cursor belongs to another order")
    return _bounded(int(cursor))


def after_key(cursor: str | None, *, ranked: bool) -> tuple[int, int] | None:
    """``(rank, id)`` of a cursor: ``rank.id`` in a ranked order, ``id`` (rank 0) in id order."""
    if cursor is None:
        return None
    if not ranked:
        return 0, after_id(cursor)
    rank, dot, last = cursor.partition(".")
    if not dot:
        raise BadRequest("query parameter 'after': this cursor belongs to another order")
    return int(rank), _bounded(int(last))


def _bounded(value: int) -> int:
    if value > MAX_INT:
        raise BadRequest("query parameter 'after': not a cursor this server gave out")
    return value


def key_cursor(key: str) -> str:
    """The cursor of a text key (URL-safe, no padding, whatever characters the key holds)."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def after_key_text(cursor: str | None) -> str | None:
    """The text key a ``key_cursor`` stands for; None without one."""
    if cursor is None:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadRequest("query parameter 'after': not a cursor this server gave out") from None
    if "\x00" in key:  # PostgreSQL cannot compare text holding NUL
        raise BadRequest("query parameter 'after': not a cursor this server gave out")
    return key


def cut(rows: Sequence[T], limit: int, key: Callable[[T], str]) -> tuple[list[T], str | None]:
    """``rows`` were fetched with ``limit + 1``: the page, and the next cursor if more exist."""
    if len(rows) <= limit:
        return list(rows), None
    page = list(rows[:limit])
    return page, key(page[-1])
