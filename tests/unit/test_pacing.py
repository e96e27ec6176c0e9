"""Write pacing (``core.pacing``) and the expected finish time (``core.operations``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from repo_updater.bootstrap import write_limits
from repo_updater.config import ConfigError, parse_config
from repo_updater.core.domain import HostKind
from repo_updater.core.operations import expected_finish
from repo_updater.core.pacing import (
    GITHUB_WRITE_LIMITS,
    OTHER_WRITE_LIMITS,
    Bucket,
    WriteLimit,
    seconds_for,
    take,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def run(limits: tuple[WriteLimit, ...], offsets: list[float]) -> list[float]:
    """Ask for a write at each offset (seconds); return the offsets that were granted."""
    buckets: list[Bucket | None] = [None] * len(limits)
    granted = []
    for offset in sorted(offsets):
        decision = take(limits, buckets, T0 + timedelta(seconds=offset))
        buckets = list(decision.buckets)
        if decision.granted:
            granted.append(offset)
    return granted


@settings(max_examples=60)
@given(
    st.integers(2, 100),
    st.integers(2, 100),
    st.lists(st.floats(0, 600, allow_nan=False), min_size=1, max_size=400),
)
def test_never_more_writes_in_any_window_than_the_limit(
    count: int, window: int, offsets: list[float]
) -> None:
    limit = WriteLimit(count, window)
    granted = run((limit,), offsets)
    for i, start in enumerate(granted):
        in_window = [t for t in granted[i:] if t < start + window]
        assert len(in_window) <= count


def test_github_limits_give_a_burst_then_the_steady_rate() -> None:
    minute, hour = GITHUB_WRITE_LIMITS
    every_second = [float(s) for s in range(3600)]
    granted = run(GITHUB_WRITE_LIMITS, every_second)
    assert len(granted) <= hour.count  # 500 an hour at most
    assert len([t for t in granted if t < 60]) <= minute.count
    assert len(granted) >= 0.9 * hour.count  # and most of them are used


def test_a_pause_grants_nothing_until_it_ends() -> None:
    limits = (WriteLimit(10, 60),)
    decision = take(limits, [None], T0, paused_until=T0 + timedelta(seconds=30))
    assert not decision.granted and decision.wait_seconds == 30.0
    later = take(limits, decision.buckets, T0 + timedelta(seconds=30), paused_until=T0)
    assert later.granted


def test_the_wait_says_when_the_next_token_comes() -> None:
    limit = WriteLimit(2, 10)  # burst 1, then 1 per 10 s
    first = take((limit,), [None], T0)
    second = take((limit,), first.buckets, T0)
    assert first.granted and not second.granted
    assert abs(second.wait_seconds - 10.0) < 1e-9
    third = take((limit,), second.buckets, T0 + timedelta(seconds=second.wait_seconds))
    assert third.granted


def test_time_for_writes_counts_what_the_buckets_hold() -> None:
    limit = WriteLimit(100, 60)  # burst 10, then 90 a minute
    assert seconds_for(10, (limit,), [None], T0) == 0.0
    assert abs(seconds_for(100, (limit,), [None], T0) - 60.0) < 1e-9


def test_expected_finish_takes_the_slower_of_observed_pace_and_budget() -> None:
    now = T0 + timedelta(seconds=100)
    observed = expected_finish(now, started_at=T0, finished=100, pending=50)
    assert observed == now + timedelta(seconds=50)
    paced = expected_finish(now, started_at=T0, finished=100, pending=50, paced_seconds=500)
    assert paced == now + timedelta(seconds=500)
    assert expected_finish(now, started_at=None, finished=0, pending=5) is None
    assert expected_finish(now, started_at=T0, finished=10, pending=0) is None


def test_write_limits_come_from_the_config_with_host_defaults() -> None:
    def service(name: str, kind: str, **extra: object) -> dict[str, object]:
        return {"name": name, "kind": kind, "url": f"https://{kind}.example.com",
                "orgs": ["acme"], **extra}  # fmt: skip

    config = parse_config(
        {"external_services": [
            service("gh", "github"),
            service("gh-bots", "github", write_limits={"per_minute": 20}),
            service("gl", "gitlab", write_limits={"per_hour": 100}),
        ]},
        {},
    )  # fmt: skip
    limits = write_limits(config)
    # Two services on one GitHub share its budget: the strictest of each window.
    assert limits[(HostKind.GITHUB, "https://github.example.com")] == (
        WriteLimit(20, 60),
        WriteLimit(500, 3600),
    )
    assert limits[(HostKind.GITLAB, "https://gitlab.example.com")] == (
        OTHER_WRITE_LIMITS[0],
        WriteLimit(100, 3600),
    )
    with pytest.raises(ConfigError, match=r"external_services\.0\.write_limits\.per_minute"):
        parse_config({"external_services": [service("x", "gitea", write_limits={"per_minute": 0})]},
                     {})  # fmt: skip
