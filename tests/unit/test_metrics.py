"""The figures ``/metrics`` adds for the reconciler and the permissions syncer, on the app's
own registry: operations by state, writes by host and result, what is left of each host's
write budget at the scrape (paused hosts have none), and the permission counts (the last full
refresh absent until every private repo was synced once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from repo_updater.core.domain import HostKind
from repo_updater.core.pacing import GITHUB_WRITE_LIMITS, Bucket, WriteLimit
from repo_updater.metrics import Metrics
from repo_updater.store.counts import StoreCounts
from repo_updater.store.permissions import PermissionCounts
from repo_updater.store.write_budgets import BudgetView
from tests.support.metrics import Samples, samples, value

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BUDGET = "repo_updater_write_budget_remaining"


def scrape(metrics: Metrics) -> Samples:
    return samples(metrics.exposition().decode())


def test_write_budgets_are_refilled_to_the_scrape_and_zero_while_paused() -> None:
    hosts = [(HostKind.GITHUB, f"https://h{i}.test") for i in range(4)]
    stored = [
        BudgetView(*hosts[1], {60: Bucket(2.0, NOW - timedelta(seconds=1)),
                               3600: Bucket(10.0, NOW - timedelta(seconds=8))}, None),
        BudgetView(*hosts[2], {60: Bucket(8.0, NOW)}, NOW + timedelta(seconds=30)),
        BudgetView(*hosts[3], {}, NOW - timedelta(seconds=1)),  # a pause that is over
    ]  # fmt: skip

    def limits_for(_host: tuple[HostKind, str]) -> tuple[WriteLimit, ...]:
        return GITHUB_WRITE_LIMITS  # 80/min: burst 8, +1.2/s; 500/h: burst 50, +0.125/s

    metrics = Metrics()
    metrics.set_write_budgets(hosts, limits_for, stored, NOW)
    got = scrape(metrics)

    def left(i: int, window: str) -> float:
        return value(got, BUDGET, host=hosts[i][1], window_seconds=window)

    assert (left(0, "60"), left(0, "3600")) == (8, 50)  # never written to: the full burst
    assert (round(left(1, "60"), 6), round(left(1, "3600"), 6)) == (3.2, 11.0)
    assert (left(2, "60"), left(2, "3600")) == (0, 0)  # paused by a rate limit
    assert (left(3, "60"), left(3, "3600")) == (8, 50)
    # A host no longer configured disappears at the next scrape.
    metrics.set_write_budgets(hosts[:1], limits_for, stored, NOW)
    assert {dict(labels)["host"] for name, labels in scrape(metrics) if name == BUDGET} == {
        hosts[0][1]
    }


def test_writes_by_host_and_result_and_operations_by_state() -> None:
    metrics = Metrics()
    metrics.observe_write("https://a.test", None)
    metrics.observe_write("https://a.test", None)
    metrics.observe_write("https://a.test", "archived")
    metrics.observe_write("https://b.test", "rate_limited")
    counts = StoreCounts(repos={"live": 3, "archived": 1, "deleted": 0},
                         operations={"running": 2})  # fmt: skip
    metrics.set_store_counts(counts)
    got = scrape(metrics)
    writes = "repo_updater_host_writes_total"
    assert value(got, writes, host="https://a.test", result="ok") == 2
    assert value(got, writes, host="https://a.test", result="archived") == 1
    assert value(got, writes, host="https://b.test", result="rate_limited") == 1
    assert (writes, frozenset({("host", "https://b.test"), ("result", "ok")})) not in got
    assert value(got, "repo_updater_operations", state="running") == 2
    assert value(got, "repo_updater_operations", state="finished") == 0


def test_permission_figures_and_the_last_full_refresh_only_once_known() -> None:
    metrics = Metrics()
    refresh = "repo_updater_permission_last_full_refresh_timestamp_seconds"
    metrics.set_permission_counts(
        PermissionCounts(due=3, scheduled=5, failing=1, never_synced=2, grants=40, oldest_sync=None)
    )
    metrics.observe_permission_syncs(synced=4, failed=1)
    got = scrape(metrics)
    assert value(got, "repo_updater_permission_sync_requests_pending") == 3
    assert value(got, "repo_updater_permission_syncs_scheduled") == 5
    assert value(got, "repo_updater_permission_syncs_failing") == 1
    assert value(got, "repo_updater_repo_permissions") == 40
    assert value(got, "repo_updater_permission_syncs_total", outcome="synced") == 4
    assert value(got, "repo_updater_permission_syncs_total", outcome="failed") == 1
    assert not [name for name, _ in got if name == refresh]  # not 0 (1970): absent
    synced = NOW - timedelta(hours=2)
    metrics.set_permission_counts(PermissionCounts(due=0, scheduled=5, failing=0,
                                                   never_synced=0, grants=40,
                                                   oldest_sync=synced))  # fmt: skip
    assert value(scrape(metrics), refresh) == synced.timestamp()
