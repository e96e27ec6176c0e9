"""The Prometheus metrics of one process, on their own ``prometheus_client`` registry.

``bootstrap.open_app`` builds one ``Metrics`` (nothing is registered at import time, and the
library's global registry is not used, so two apps in one process, as in tests, never share
figures). The services record what they do (``observe_*``); figures the store or the sources
already keep (counts, requests, rate-limit budgets) are read when ``/metrics`` is scraped.

Adding a figure: create it in ``Metrics.__init__`` on ``self.registry`` (a name starting with
``repo_updater_``, labels that do not overlap: one label set never counts what another one
counts too), record it where it happens, and list it in docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from repo_updater.core.ports import RequestCounter
from repo_updater.store.counts import StoreCounts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Repo syncs take from well under a second (an unchanged small service) to minutes (100,000
# repos); a changeset batch from tens of milliseconds to tens of seconds (rate limits).
REPO_SYNC_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
CHANGESET_SYNC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _HostTraffic(Collector):
    """Requests to the code hosts by host and kind, and each host's last reported
    rate-limit budget, read from the sources' ``RequestCounter`` at scrape time."""

    def __init__(self, counter: RequestCounter) -> None:
        self._counter = counter

    def collect(self) -> Iterable[Metric]:
        requests = CounterMetricFamily(
            "repo_updater_code_host_requests",
            "HTTP requests sent to code hosts (retries included), by host and kind",
            labels=["host", "kind"],
        )
        for (host, kind), n in sorted(self._counter.by_host.items()):
            requests.add_metric([host, kind], n)
        yield requests
        remaining = GaugeMetricFamily(
            "repo_updater_rate_limit_remaining",
            "Requests (GitHub GraphQL: points) left in the host's rate-limit window, as the "
            "host last said",
            labels=["host"],
        )
        for host, value in sorted(self._counter.rate_limit_remaining.items()):
            remaining.add_metric([host], value)
        yield remaining


class Metrics:
    def __init__(self, counter: RequestCounter | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.repo_sync_seconds = Histogram(
            "repo_updater_repo_sync_duration_seconds",
            "Duration of one repo sync of one external service",
            ["service", "outcome"],  # outcome: complete | incomplete
            buckets=REPO_SYNC_BUCKETS,
            registry=r,
        )
        self.changeset_sync_seconds = Histogram(
            "repo_updater_changeset_sync_duration_seconds",
            "Duration of loading and writing one batch of changesets from one code host",
            ["host"],
            buckets=CHANGESET_SYNC_BUCKETS,
            registry=r,
        )
        self.sync_errors = Counter(
            "repo_updater_sync_errors",
            "Failed syncs by what failed (repo_sync: one per service sync; changeset_sync: "
            "one per changeset) and why (rate_limited, not_found, archived, forbidden, "
            "unauthorized, conflict, host_error, internal)",
            ["sync", "reason"],
            registry=r,
        )
        # Live repos split by the archived flag (the two add up to every live repo), and
        # removed ones apart: no label set counts what another counts.
        self.repos = Gauge(
            "repo_updater_repos", "Live repositories, by archived flag", ["archived"], registry=r
        )
        self.repos_deleted = Gauge(
            "repo_updater_repos_deleted", "Removed repositories kept for history", registry=r
        )
        self.changesets = Gauge(
            "repo_updater_changesets",
            "Tracked changesets by external state (UNSYNCED: never synced)",
            ["external_state"],
            registry=r,
        )
        self.changeset_sync_requests = Gauge(
            "repo_updater_changeset_sync_requests_pending",
            "Changeset sync requests not yet served",
            registry=r,
        )
        self.permission_sync_requests = Gauge(
            "repo_updater_permission_sync_requests_pending",
            "Repository permission sync requests not yet served",
            registry=r,
        )
        self.service_last_sync = Gauge(
            "repo_updater_service_last_sync_timestamp_seconds",
            "When the service's last repo sync (failed or not) ended",
            ["service"],
            registry=r,
        )
        self.service_last_success = Gauge(
            "repo_updater_service_last_success_timestamp_seconds",
            "When the service's last complete repo sync ended",
            ["service"],
            registry=r,
        )
        self.service_failed = Gauge(
            "repo_updater_service_last_sync_failed",
            "1 if the service's last repo sync failed",
            ["service"],
            registry=r,
        )
        if counter is not None:
            r.register(_HostTraffic(counter))

    # --- recorded by the services -------------------------------------------------------------

    def observe_repo_sync(self, service: str, seconds: float, error_reason: str | None) -> None:
        outcome = "complete" if error_reason is None else "incomplete"
        self.repo_sync_seconds.labels(service, outcome).observe(seconds)
        if error_reason is not None:
            self.sync_errors.labels("repo_sync", error_reason).inc()

    def observe_changeset_batch(self, host: str, seconds: float) -> None:
        self.changeset_sync_seconds.labels(host).observe(seconds)

    def changeset_errors(self, reason: str, count: int) -> None:
        if count:
            self.sync_errors.labels("changeset_sync", reason).inc(count)

    # --- read from the store at scrape time ---------------------------------------------------

    def set_store_counts(self, counts: StoreCounts) -> None:
        self.repos.labels("false").set(counts.repos["live"] - counts.repos["archived"])
        self.repos.labels("true").set(counts.repos["archived"])
        self.repos_deleted.set(counts.repos["deleted"])
        _replace(self.changesets, counts.changesets.items())
        self.changeset_sync_requests.set(counts.changeset_sync_requests)
        self.permission_sync_requests.set(counts.permission_sync_requests)
        for gauge in (self.service_last_sync, self.service_last_success, self.service_failed):
            gauge.clear()  # a retired service disappears
        for svc in counts.services:
            if svc.last_sync_at is not None:
                self.service_last_sync.labels(svc.name).set(svc.last_sync_at)
            if svc.last_success_at is not None:
                self.service_last_success.labels(svc.name).set(svc.last_success_at)
            self.service_failed.labels(svc.name).set(int(svc.failed))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _replace(gauge: Gauge, values: Iterable[tuple[str, int]]) -> None:
    gauge.clear()
    for label, value in values:
        gauge.labels(label).set(value)


def metric_names(metrics: Metrics) -> Iterator[str]:
    """Every metric family the registry exposes (docs and tests)."""
    for family in metrics.registry.collect():
        yield family.name
