"""The burndown sweep: the counts at each moment are the states each changeset was in then, as
a brute-force replay of the history finds them; READONLY is a band of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repo_updater.core.burndown import STATES, UNSYNCED, BurndownSweep, moments

T0 = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_an_archive_flip_moves_open_changesets_to_their_own_band() -> None:
    at = moments(T0, T0 + 4 * H, 5)
    sweep = BurndownSweep(at)
    for cs in (1, 2, 3):
        sweep.feed(T0, cs, UNSYNCED)
    for cs in (1, 2, 3):
        sweep.feed(T0 + H, cs, "OPEN")
    sweep.feed(T0 + 2 * H + timedelta(minutes=1), 1, "READONLY")
    sweep.feed(T0 + 2 * H + timedelta(minutes=1), 2, "READONLY")
    sweep.feed(T0 + 4 * H, 2, "OPEN")  # unarchived exactly at the last moment: counted
    points = sweep.points()
    assert [p.at for p in points] == [T0 + i * H for i in range(5)]
    wanted = [
        {UNSYNCED: 3},
        {"OPEN": 3},
        {"OPEN": 3},
        {"OPEN": 1, "READONLY": 2},
        {"OPEN": 2, "READONLY": 1},
    ]
    for point, counts in zip(points, wanted, strict=True):
        assert point.counts == {state: counts.get(state, 0) for state in STATES}


def test_moments_and_order_are_checked() -> None:
    assert moments(T0, T0, 2) == [T0, T0]
    with pytest.raises(ValueError):
        moments(T0, T0 + H, 1)
    with pytest.raises(ValueError):
        moments(T0 + H, T0, 3)
    sweep = BurndownSweep([T0])
    sweep.feed(T0 + H, 1, "OPEN")
    with pytest.raises(ValueError):
        sweep.feed(T0, 1, "OPEN")


transition = st.tuples(
    st.integers(min_value=0, max_value=100),  # minutes after T0
    st.integers(min_value=1, max_value=5),  # changeset
    st.sampled_from(STATES),
)


@given(st.lists(transition, max_size=40), st.integers(min_value=2, max_value=12))
def test_the_sweep_agrees_with_a_replay(raw: list[tuple[int, int, str]], points: int) -> None:
    history = sorted(((T0 + timedelta(minutes=m), cs, s) for m, cs, s in raw), key=lambda t: t[0])
    at = moments(T0, T0 + timedelta(minutes=100), points)
    sweep = BurndownSweep(at)
    for when, cs, state in history:
        sweep.feed(when, cs, state)
    for point in sweep.points():
        latest: dict[int, str] = {}
        for when, cs, state in history:
            if when <= point.at:
                latest[cs] = state
        expected = {state: 0 for state in STATES}
        for state in latest.values():
            expected[state] += 1
        assert point.counts == expected
