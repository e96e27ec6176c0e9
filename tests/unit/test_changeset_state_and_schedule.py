from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repo_updater.core.batching import group_by
from repo_updater.core.changeset_state import derive_external_state, is_terminal, last_change
from repo_updater.core.domain import (
    ChangesetEvent,
    ChangesetSnapshot,
    ExternalState,
    HostPullState,
)
from repo_updater.core.schedule import MAX_SYNC_DELAY, MIN_SYNC_DELAY, next_sync_at, retry_at

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ages = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400))
moments = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@pytest.mark.parametrize("host_state", list(HostPullState))
@pytest.mark.parametrize("archived", [False, True])
def test_readonly_only_for_open_and_draft_on_archived_repos(
    host_state: HostPullState, archived: bool
) -> None:
    got = derive_external_state(host_state, archived)
    if archived and host_state in (HostPullState.OPEN, HostPullState.DRAFT):
        assert got is ExternalState.READONLY
    else:
        assert got.value == host_state.value


@given(age=ages, now=moments)
def test_next_sync_is_clamped_between_two_minutes_and_eight_hours(
    age: timedelta, now: datetime
) -> None:
    delay = next_sync_at(now, now - age) - now
    assert MIN_SYNC_DELAY <= delay <= MAX_SYNC_DELAY


@given(a=ages, b=ages)
def test_next_sync_is_monotonic_in_time_since_change(a: timedelta, b: timedelta) -> None:
    young, old = sorted((a, b))
    assert next_sync_at(NOW, NOW - young) <= next_sync_at(NOW, NOW - old)


def test_next_sync_is_half_the_quiet_time_inside_the_bounds() -> None:
    assert next_sync_at(NOW, NOW - timedelta(hours=2)) == NOW + timedelta(hours=1)
    assert next_sync_at(NOW, NOW - timedelta(minutes=1)) == NOW + MIN_SYNC_DELAY
    assert next_sync_at(NOW, NOW - timedelta(days=30)) == NOW + MAX_SYNC_DELAY


@given(ahead=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
def test_unknown_or_future_last_change_syncs_soon(ahead: timedelta) -> None:
    assert next_sync_at(NOW, None) == NOW + MIN_SYNC_DELAY
    assert next_sync_at(NOW, NOW + ahead) == NOW + MIN_SYNC_DELAY


@given(age=st.one_of(st.none(), ages.map(lambda a: NOW - a)))
def test_terminal_changesets_sit_at_the_maximum(age: datetime | None) -> None:
    assert next_sync_at(NOW, age, terminal=True) == NOW + MAX_SYNC_DELAY


def test_terminal_states() -> None:
    assert {s for s in ExternalState if is_terminal(s)} == {
        ExternalState.MERGED, ExternalState.CLOSED, ExternalState.DELETED
    }  # fmt: skip
    assert is_terminal(HostPullState.MERGED) and not is_terminal(HostPullState.DRAFT)
    assert not is_terminal(None)


@given(a=st.integers(1, 200), b=st.integers(1, 200))
def test_retry_backoff_grows_and_is_bounded(a: int, b: int) -> None:
    few, many = sorted((a, b))
    assert MIN_SYNC_DELAY <= retry_at(NOW, few) - NOW <= retry_at(NOW, many) - NOW <= MAX_SYNC_DELAY


def test_retry_backoff_doubles() -> None:
    assert [retry_at(NOW, n) - NOW for n in (1, 2, 3)] == [
        timedelta(minutes=2), timedelta(minutes=4), timedelta(minutes=8)
    ]  # fmt: skip
    with pytest.raises(ValueError):
        retry_at(NOW, 0)


def test_last_change_is_the_newest_of_updated_at_and_events() -> None:
    events = (ChangesetEvent("reviewed", NOW - timedelta(hours=1)),
              ChangesetEvent("commented", NOW - timedelta(hours=3)))  # fmt: skip
    snap = ChangesetSnapshot(1, 1, HostPullState.OPEN, updated_at=NOW - timedelta(hours=2))
    assert last_change(snap) == NOW - timedelta(hours=2)
    assert last_change(ChangesetSnapshot(1, 1, HostPullState.OPEN, events=events)) == (
        NOW - timedelta(hours=1)
    )
    assert last_change(ChangesetSnapshot(1, 1, HostPullState.OPEN)) is None


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers())))
def test_group_by_keeps_every_item_in_order(items: list[tuple[str, int]]) -> None:
    groups = group_by(items, lambda i: i[0])
    assert sorted(x for g in groups.values() for x in g) == sorted(items)
    for key, group in groups.items():
        assert group == [i for i in items if i[0] == key]
