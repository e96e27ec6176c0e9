"""The repo-sync schedule of an external service (issue 7.11): failing services back off up to
8 h and reset on success, a rate limit's retry-after is honoured, idle services are synced
gently less often, bounded by a small factor of the interval. Property tests on plain values;
and the loops' capped backoff and the internal-error text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repo_updater.core.errors import internal_error
from repo_updater.core.schedule import (
    IDLE_AFTER,
    MAX_IDLE_FACTOR,
    MAX_SERVICE_BACKOFF,
    delay_backoff,
    next_service_sync_at,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
intervals = st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=7))
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=2))
counts = st.integers(0, 10_000)
waits = st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2))


@given(interval=intervals, took=durations, failures=st.integers(1, 10_000), unchanged=counts)
def test_a_failing_service_backs_off_doubling_up_to_eight_hours(
    interval: timedelta, took: timedelta, failures: int, unchanged: int
) -> None:
    started, now = NOW - took, NOW
    due = next_service_sync_at(
        started=started, now=now, interval=interval, failures=failures, unchanged=unchanged
    )
    delay = due - now
    # Beyond 2 ** 15 intervals of at least a second, the cap holds anyway.
    expected = min(MAX_SERVICE_BACKOFF, interval * 2 ** min(failures - 1, 15))
    assert delay == expected
    more = next_service_sync_at(
        started=started, now=now, interval=interval, failures=failures + 1, unchanged=unchanged
    )
    assert due <= more, "one more failure never brings the next try closer"
    if interval <= MAX_SERVICE_BACKOFF:
        assert delay <= MAX_SERVICE_BACKOFF


@given(interval=intervals, took=durations, unchanged=counts)
def test_success_resets_the_backoff_and_idle_stays_bounded(
    interval: timedelta, took: timedelta, unchanged: int
) -> None:
    started = NOW - took
    due = next_service_sync_at(
        started=started, now=NOW, interval=interval, failures=0, unchanged=unchanged
    )
    assert started + interval <= due <= started + interval * MAX_IDLE_FACTOR
    if unchanged < IDLE_AFTER:
        assert due == started + interval, "a service that changes is synced every interval"
    later = next_service_sync_at(
        started=started, now=NOW, interval=interval, failures=0, unchanged=unchanged + 1
    )
    assert due <= later <= started + interval * MAX_IDLE_FACTOR


@given(
    interval=intervals,
    failures=st.integers(0, 50),
    unchanged=counts,
    retry_after=waits,
)
def test_retry_after_is_carried_into_the_next_sync(
    interval: timedelta, failures: int, unchanged: int, retry_after: timedelta | None
) -> None:
    kw = {"started": NOW, "now": NOW, "interval": interval, "unchanged": unchanged}
    plain = next_service_sync_at(failures=failures, **kw)  # type: ignore[arg-type]
    due = next_service_sync_at(failures=failures, retry_after=retry_after, **kw)  # type: ignore[arg-type]
    assert due == max(plain, NOW + (retry_after or timedelta(0)))


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        next_service_sync_at(started=NOW, now=NOW, interval=timedelta(0), failures=0, unchanged=0)
    with pytest.raises(ValueError, match="negative"):
        next_service_sync_at(started=NOW, now=NOW, interval=timedelta(1), failures=-1, unchanged=0)


@given(st.integers(0, 10_000))
def test_loop_backoff_is_exponential_and_capped(failures: int) -> None:
    delay = delay_backoff(failures, base=0.5, cap=30.0)
    assert 0 <= delay <= 30.0
    assert delay <= delay_backoff(failures + 1, base=0.5, cap=30.0)
    if failures == 0:
        assert delay == 0
    elif failures <= 6:
        assert delay == 0.5 * 2 ** (failures - 1)


class _Driver(Exception):
    pass


class _DBAPIError(Exception):
    """Shaped like SQLAlchemy's DBAPIError: the driver's exception in ``orig``."""

    def __init__(self, orig: Exception) -> None:
        super().__init__(f"({type(orig).__name__}) {orig} [SQL: INSERT ...] [parameters: ...]")
        self.orig = orig


class IntegrityError(_DBAPIError):
    pass


def test_an_internal_error_names_its_cause_cut_short() -> None:
    sqlite = IntegrityError(_Driver("UNIQUE constraint failed: index 'repos_live_name_uq'"))
    assert internal_error(sqlite) == (
        "internal error: IntegrityError: UNIQUE constraint failed: index 'repos_live_name_uq'"
    )
    asyncpg = IntegrityError(
        _Driver(
            "<class 'asyncpg.exceptions.UniqueViolationError'>: duplicate key value violates "
            'unique constraint "repos_live_name_uq"\nDETAIL:  Key (lower(name))=(x) exists.'
        )
    )
    assert internal_error(asyncpg) == (
        "internal error: IntegrityError: duplicate key value violates unique constraint "
        '"repos_live_name_uq"'
    )
    long = internal_error(IntegrityError(_Driver("x" * 1000)))
    assert len(long) < 260 and long.endswith("...")
    # A bug's own message might quote anything (a header): only its type is named.
    assert internal_error(KeyError("Authorization: Bearer t0ken")) == "internal error: KeyError"
    refused = internal_error(ConnectionRefusedError(111, "Connect call failed"))
    assert refused.startswith("internal error: ConnectionRefusedError: [Errno 111]")
