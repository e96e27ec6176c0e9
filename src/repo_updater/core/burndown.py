"""The burndown of a batch change: how many of its changesets were in each state at a series of
moments, computed in one pass over their state transitions in time order. Pure: the caller
streams the transitions (so memory is the number of changesets, never the length of the
history) and passes the moments.

A changeset counts as ``UNSYNCED`` from its creation until its first sync, then in each
external state from the moment it entered it. A state at moment ``t`` includes every transition
at or before ``t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from repo_updater.core.domain import ExternalState

UNSYNCED = "UNSYNCED"  # tracked, not synced yet: no external state

# Every band of the chart, bottom to top: what still needs work first, READONLY on its own.
STATES: tuple[str, ...] = (
    UNSYNCED,
    ExternalState.DRAFT.value,
    ExternalState.OPEN.value,
    ExternalState.READONLY.value,
    ExternalState.CLOSED.value,
    ExternalState.DELETED.value,
    ExternalState.MERGED.value,
)

MAX_POINTS = 200


@dataclass(frozen=True, slots=True)
class BurndownPoint:
    at: datetime
    counts: dict[str, int]  # every state of STATES, zeros included


def moments(start: datetime, end: datetime, points: int) -> list[datetime]:
    """``points`` moments evenly spaced from ``start`` to ``end``, both included."""
    if not 2 <= points <= MAX_POINTS:
        raise ValueError(f"points must be between 2 and {MAX_POINTS}")
    if end < start:
        raise ValueError("end must not be before start")
    step = (end - start) / (points - 1)
    return [start + step * i for i in range(points - 1)] + [end]


class BurndownSweep:
    """Feed transitions ``(at, changeset_id, state)`` in time order, then take the points."""

    def __init__(self, at: Sequence[datetime]) -> None:
        if list(at) != sorted(at):
            raise ValueError("moments must be in time order")
        self._moments = list(at)
        self._next = 0
        self._state: dict[int, str] = {}
        self._counts: dict[str, int] = dict.fromkeys(STATES, 0)
        self._points: list[BurndownPoint] = []
        self._last: datetime | None = None

    def feed(self, at: datetime, changeset_id: int, state: str) -> None:
        if self._last is not None and at < self._last:
            raise ValueError("transitions must come in time order")
        self._last = at
        self._emit_before(at)
        old = self._state.get(changeset_id)
        if old is not None:
            self._counts[old] -= 1
        self._state[changeset_id] = state
        self._counts[state] = self._counts.get(state, 0) + 1

    def points(self) -> list[BurndownPoint]:
        """The counts at every moment (transitions fed so far included)."""
        while self._next < len(self._moments):
            self._snapshot()
        return list(self._points)

    def _emit_before(self, at: datetime) -> None:
        while self._next < len(self._moments) and self._moments[self._next] < at:
            self._snapshot()

    def _snapshot(self) -> None:
        self._points.append(BurndownPoint(self._moments[self._next], dict(self._counts)))
        self._next += 1
