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

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from repo_updater.core.domain import HostKind
from repo_updater.core.operations import OperationState
from repo_updater.core.pacing import WriteLimit, refill
from repo_updater.core.ports import RequestCounter
from repo_updater.store.counts import StoreCounts
from repo_updater.store.permissions import PermissionCounts
from repo_updater.store.write_budgets import BudgetView

HostKey = tuple[HostKind, str]

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


class _OptionalGauge(Collector):
    """A gauge without labels that is absent until it has a value (a prometheus_client
    ``Gauge`` would show 0: a timestamp of 1970, which an alert would take for stale)."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self.value: float | None = None

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation)
        if self.value is not None:
            family.add_metric([], self.value)
        yield family


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
            "unauthorized, conflict, refused, host_error, internal)",
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
        self._permission_figures(r)
        self._operation_figures(r)
        self._webhook_figures(r)
        if counter is not None:
            r.register(_HostTraffic(counter))

    def _permission_figures(self, r: CollectorRegistry) -> None:
        self.permission_sync_requests = Gauge(
            "repo_updater_permission_sync_requests_pending",
            "Permission syncs due now: the queue the permissions syncer drains",
            registry=r,
        )
        self.permission_syncs_scheduled = Gauge(
            "repo_updater_permission_syncs_scheduled",
            "Private repositories with a permission sync due now or later",
            registry=r,
        )
        self.permission_syncs_failing = Gauge(
            "repo_updater_permission_syncs_failing",
            "Private repositories whose last permission sync failed",
            registry=r,
        )
        self.repo_permissions = Gauge(
            "repo_updater_repo_permissions", "Stored grants (account, repository)", registry=r
        )
        self.permission_full_refresh = _OptionalGauge(
            "repo_updater_permission_last_full_refresh_timestamp_seconds",
            "Every private repository's permissions were synced since then (absent while one "
            "never was)",
        )
        r.register(self.permission_full_refresh)
        self.permission_syncs = Counter(
            "repo_updater_permission_syncs",
            "Repository permission syncs this process wrote, by outcome (synced, failed)",
            ["outcome"],
            registry=r,
        )

    def _operation_figures(self, r: CollectorRegistry) -> None:
        self.operations = Gauge(
            "repo_updater_operations",
            "Bulk operations on changesets by state (running: some results pending)",
            ["state"],
            registry=r,
        )
        self.host_writes = Counter(
            "repo_updater_host_writes",
            "Writes to code hosts this process made for bulk operations (one per changeset "
            "attempt), by host and result (ok, or why not: rate_limited, archived, "
            "not_found, forbidden, unauthorized, conflict, refused, host_error, internal)",
            ["host", "result"],
            registry=r,
        )
        self.write_budget = Gauge(
            "repo_updater_write_budget_remaining",
            "Writes the host's budget allows now, per limit window (0 while a rate limit "
            "paused the host)",
            ["host", "window_seconds"],
            registry=r,
        )

    def _webhook_figures(self, r: CollectorRegistry) -> None:
        self.webhook_deliveries = Counter(
            "repo_updater_webhook_deliveries",
            'Webhook deliveries this process answered, by service ("" when the route names '
            "no configured service) and outcome: stored, duplicate (a redelivery), ping, "
            "ignored (an event nothing acts on), or refused: bad_signature, malformed, "
            "too_large, unknown_service",
            ["service", "outcome"],
            registry=r,
        )
        self.webhook_processed = Counter(
            "repo_updater_webhook_processed",
            "Stored webhook deliveries processed, by outcome (done, retry: parked after a "
            "failed attempt, failed: given up, polling repairs)",
            ["outcome"],
            registry=r,
        )

    def observe_delivery(self, service: str, outcome: str) -> None:
        self.webhook_deliveries.labels(service, outcome).inc()

    def observe_processed(self, outcome: str, count: int = 1) -> None:
        if count:
            self.webhook_processed.labels(outcome).inc(count)

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

    def observe_permission_syncs(self, synced: int, failed: int) -> None:
        if synced:
            self.permission_syncs.labels("synced").inc(synced)
        if failed:
            self.permission_syncs.labels("failed").inc(failed)

    def observe_write(self, host: str, error_reason: str | None) -> None:
        """One attempt at a changeset's write on ``host`` (its ``host_url``): ``None`` when
        it went through, else ``core.errors.reason`` of why not."""
        self.host_writes.labels(host, error_reason or "ok").inc()

    # --- read from the store at scrape time ---------------------------------------------------

    def set_store_counts(self, counts: StoreCounts) -> None:
        self.repos.labels("false").set(counts.repos["live"] - counts.repos["archived"])
        self.repos.labels("true").set(counts.repos["archived"])
        self.repos_deleted.set(counts.repos["deleted"])
        _replace(self.changesets, counts.changesets.items())
        self.changeset_sync_requests.set(counts.changeset_sync_requests)
        for state in OperationState:
            self.operations.labels(state.value).set(counts.operations.get(state.value, 0))
        for gauge in (self.service_last_sync, self.service_last_success, self.service_failed):
            gauge.clear()  # a retired service disappears
        for svc in counts.services:
            if svc.last_sync_at is not None:
                self.service_last_sync.labels(svc.name).set(svc.last_sync_at)
            if svc.last_success_at is not None:
                self.service_last_success.labels(svc.name).set(svc.last_success_at)
            self.service_failed.labels(svc.name).set(int(svc.failed))

    def set_permission_counts(self, counts: PermissionCounts) -> None:
        self.permission_sync_requests.set(counts.due)
        self.permission_syncs_scheduled.set(counts.scheduled)
        self.permission_syncs_failing.set(counts.failing)
        self.repo_permissions.set(counts.grants)
        oldest = counts.oldest_sync
        self.permission_full_refresh.value = None if oldest is None else oldest.timestamp()

    def set_write_budgets(
        self,
        hosts: Iterable[HostKey],
        limits_for: Callable[[HostKey], Sequence[WriteLimit]],
        stored: Iterable[BudgetView],
        now: datetime,
    ) -> None:
        """What is left of each configured host's write limits at ``now``: the stored token
        buckets refilled to now (a host never written to has its full burst)."""
        by_host = {(b.host_kind, b.host_url): b for b in stored}
        self.write_budget.clear()
        for host in hosts:
            budget = by_host.get(host)
            paused = (
                budget is not None
                and budget.paused_until is not None
                and (budget.paused_until > now)
            )
            for limit in limits_for(host):
                bucket = None if budget is None else budget.buckets.get(limit.window_seconds)
                left = 0.0 if paused else refill(limit, bucket, now).tokens
                self.write_budget.labels(host[1], str(limit.window_seconds)).set(left)

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
