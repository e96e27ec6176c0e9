"""GitHub's GraphQL rate limit, as the host reports it (pure: the caller passes ``now``).

- An exhausted limit is **not** an HTTP error: GitHub answers ``200`` with
  ``{"errors": [{"type": "RATE_LIMITED", ...}]}`` (also seen: ``"type": "RATE_LIMIT"`` with
  ``"code": "graphql_rate_limit"``, or only a message "API rate limit ... exceeded") and
  ``x-ratelimit-remaining: 0``; a secondary limit may come the same way. Wait ``retry-after``
  if given, else until ``x-ratelimit-reset`` when nothing remains, else a minute.
  (docs.github.com, "Rate limits and query limits for the GraphQL API".)
- A successful answer may also say ``x-ratelimit-remaining: 0``: that is no error, but the
  next query would fail. ``rateLimit { cost remaining resetAt }`` in the query tells the same
  in the body; ``GraphQLBudget`` keeps it to back off *before* the limit.
- GitHub Enterprise Server has rate limits off by default: ``rateLimit`` may be null and the
  headers absent; then nothing is known and nothing is held back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RATE_LIMIT_TYPES = frozenset({"RATE_LIMITED", "RATE_LIMIT"})
_RATE_LIMIT_MESSAGE = re.compile(r"rate limit", re.IGNORECASE)
SECONDARY_WAIT = 60.0  # GitHub asks for at least a minute when it gives no time


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def rate_limit_wait(headers: Mapping[str, str], now: float) -> float:
    """Seconds to wait after a rate-limit answer: ``retry-after``; else, when nothing
    remains, until ``x-ratelimit-reset`` (plus a second for clock skew); else a minute."""
    retry_after = _float(headers.get("retry-after"))
    if retry_after is not None:
        return max(0.0, retry_after)
    reset = _float(headers.get("x-ratelimit-reset"))
    if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
        return max(0.0, reset - now) + 1.0
    return SECONDARY_WAIT


def is_rate_limit(error: Any) -> bool:
    """Whether one GraphQL ``errors[]`` entry reports a rate limit."""
    if not isinstance(error, dict):
        return False
    if error.get("type") in RATE_LIMIT_TYPES or error.get("code") == "graphql_rate_limit":
        return True
    # Without a type, only an error about the whole query (no path) counts: a field's error
    # message mentioning rate limits is that field's business.
    message = error.get("message")
    return (
        not error.get("path")
        and isinstance(message, str)
        and bool(_RATE_LIMIT_MESSAGE.search(message))
    )


def rate_limit_error(
    body: Mapping[str, Any], headers: Mapping[str, str], now: float
) -> tuple[str, float] | None:
    """``(message, seconds to wait)`` when a GraphQL answer (whatever its HTTP status) says
    the rate limit is exceeded, else None."""
    errors = body.get("errors")
    if not isinstance(errors, list):
        return None
    for error in errors:
        if is_rate_limit(error):
            message = str(error.get("message") or "rate limit exceeded")[:300]
            return message, rate_limit_wait(headers, now)
    return None


def _epoch(value: Any) -> float | None:
    """``resetAt`` is an ISO-8601 ``DateTime`` (its schema description says epoch seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(slots=True)
class GraphQLBudget:
    """What is left of the GraphQL rate limit, as last reported, and whether the next query
    fits in it. ``reserve``: points left unused for others sharing the token."""

    reserve: int = 0
    remaining: int | None = None
    reset_at: float | None = None  # epoch seconds
    cost: int = 1  # of the last query: the estimate for the next one

    def update(self, data: Any, headers: Mapping[str, str], now: float) -> None:
        """Read ``rateLimit { cost remaining resetAt }`` of a response, else its
        ``x-ratelimit-*`` headers; keep what is known when neither says anything."""
        rate = data.get("rateLimit") if isinstance(data, dict) else None
        if isinstance(rate, dict) and isinstance(rate.get("remaining"), int):
            self.remaining = rate["remaining"]
            self.reset_at = _epoch(rate.get("resetAt"))
            cost = rate.get("cost")
            if isinstance(cost, int) and cost > 0:
                self.cost = cost
            return
        remaining = _float(headers.get("x-ratelimit-remaining"))
        if remaining is not None:
            self.remaining = int(remaining)
            self.reset_at = _float(headers.get("x-ratelimit-reset"))

    def exhausted(self, until: float) -> None:
        """The host said the limit is used up until ``until`` (epoch seconds)."""
        self.remaining, self.reset_at = 0, until

    def wait_before_query(self, now: float) -> float | None:
        """Seconds to wait before the next query, or None when it may go now: it would not fit
        in what remains (above the reserve) and the window has not reset yet."""
        if self.remaining is None or self.reset_at is None:
            return None
        if now >= self.reset_at:
            self.remaining = None  # a new window: unknown until the next answer
            return None
        if self.remaining - self.reserve >= self.cost:
            return None
        return max(0.0, self.reset_at - now) + 1.0
