"""How the polling loops of one process fail: with a capped exponential backoff, and one log
line when a failure starts and one when it ends (not a traceback per round), and what
``/healthz`` reports meanwhile.

A round that raises is retried after ``core.schedule.delay_backoff`` of its consecutive
failures (0.5 s doubling to 30 s). When the store is unreachable (``store.db.is_unavailable``:
a refused or dropped connection, a server shutting down, an SQLite file that cannot be
opened), the process is *degraded*: ``/healthz`` answers 503 until a round or a health check
reaches the store again. The first failure of an outage is logged at ERROR with its cause;
repeats only at DEBUG; the recovery at WARNING with the outage's length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from repo_updater.core.errors import describe
from repo_updater.core.schedule import delay_backoff
from repo_updater.store.db import is_unavailable

log = logging.getLogger(__name__)

MAX_LOOP_BACKOFF = 30.0  # seconds between failed rounds, at most


@dataclass(slots=True)
class _Streak:
    failures: int = 0
    since: float = 0.0
    cause: str = ""


@dataclass
class Health:
    """Shared by the loops of one process (built by ``bootstrap``)."""

    clock: Callable[[], float] = time.monotonic
    _streaks: dict[str, _Streak] = field(default_factory=dict)
    _outage: _Streak | None = None

    @property
    def store_available(self) -> bool:
        return self._outage is None

    @property
    def store_error(self) -> str | None:
        return None if self._outage is None else self._outage.cause

    def failed(self, loop: str, exc: BaseException) -> float:
        """Record a failed round of ``loop``; returns how long the loop should wait."""
        cause = describe(exc)
        if is_unavailable(exc):
            self.store_failed(cause)
        streak = self._streaks.setdefault(loop, _Streak(since=self.clock()))
        streak.failures += 1
        if streak.failures == 1 and not is_unavailable(exc):
            log.error("%s failed: %s; retrying with backoff", loop, cause)
            log.debug("traceback of the failed %s round", loop, exc_info=exc)
        else:
            log.debug("%s failed again (%d): %s", loop, streak.failures, cause)
        return delay_backoff(streak.failures, cap=MAX_LOOP_BACKOFF)

    def started(self) -> float:
        """The time to pass to :meth:`succeeded` when the round ends."""
        return self.clock()

    def succeeded(self, loop: str, started: float | None = None) -> None:
        """A round of ``loop`` that began at ``started`` completed: it works again, and so
        does the store, unless the round began before the outage did (it may have run on a
        connection opened before, which says nothing about now)."""
        streak = self._streaks.pop(loop, None)
        if streak is not None and streak.failures and self._outage is None:
            log.warning("%s works again after %d failed rounds", loop, streak.failures)
        if self._outage is not None and started is not None and started < self._outage.since:
            return
        self.store_reached()

    def store_failed(self, cause: str) -> None:
        if self._outage is None:
            self._outage = _Streak(failures=1, since=self.clock(), cause=cause)
            log.error("store unavailable: %s; retrying with backoff", cause)
        else:
            self._outage.failures += 1
            self._outage.cause = cause

    def store_reached(self) -> None:
        if self._outage is not None:
            took = self.clock() - self._outage.since
            log.warning("store available again after %.0fs", took)
            self._outage = None


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
