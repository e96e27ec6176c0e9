"""The webhook receiver: durable, then fast.

A delivery to ``POST /webhooks/{service}`` is checked (the service exists, the body is at most
1 MiB, the signature verifies with the service's secret, the payload says what it must), then
stored with its delivery id, and answered in one short transaction; the webhook worker
(``service_layer.webhook_worker``) does the work. A refused delivery changes nothing but the
service's "last refused" note (a bad signature: ``services list`` shows that deliveries
do not verify), and is counted in ``repo_updater_webhook_deliveries``.
A redelivered id stores nothing and answers 200.

Answers: 202 for a delivery taken (stored, duplicate, ping, or an event nothing acts on); 400
malformed; 401 bad or missing signature (or no secret configured); 404 unknown service; 413
too large.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from repo_updater.config import ServiceConfig
from repo_updater.core import webhooks as wh
from repo_updater.metrics import Metrics
from repo_updater.store import webhooks as store

log = logging.getLogger(__name__)


class UnknownService(wh.WebhookRejected):
    status = 404
    reason = "unknown_service"


class TooLarge(wh.WebhookRejected):
    status = 413
    reason = "too_large"


@dataclass(frozen=True, slots=True)
class Received:
    outcome: str  # stored | duplicate | ping | ignored
    event: str
    delivery_id: str


@dataclass
class WebhookReceiver:
    engine: AsyncEngine  # the API's pool
    services: Mapping[str, ServiceConfig]  # configured, by name
    secrets: Mapping[str, str]  # by service name; never logged or answered
    clock: Callable[[], datetime]
    metrics: Metrics | None = None
    on_stored: Callable[[], None] | None = None  # wakes this process's webhook worker

    async def receive(
        self, service: str, headers: Mapping[str, str], body: bytes | None
    ) -> Received:
        """Verify, store and say what to answer; raises ``WebhookRejected`` (with its HTTP
        status) for a delivery that is refused. ``body`` None: it was over the size limit."""
        svc = self.services.get(service)
        label = service if svc is not None else ""
        try:
            if svc is None:
                raise UnknownService("no external service of that name has webhooks here")
            if body is None or len(body) > wh.MAX_DELIVERY_BYTES:
                raise TooLarge(f"a delivery may be at most {wh.MAX_DELIVERY_BYTES} bytes")
            wh.verify(svc.kind, self.secrets.get(service, ""), headers, body)
            delivery = wh.parse(svc.kind, headers, body)
        except wh.WebhookRejected as refused:
            self._count(label, refused.reason)
            log.warning("webhook delivery for %s refused: %s", label or "?", refused)
            if svc is not None and isinstance(refused, wh.BadSignature):
                await self._note_rejection(service, refused)  # deliveries do not verify
            raise
        now = self.clock()
        async with self.engine.begin() as conn:
            ref = await store.live_service(conn, service)
            if ref is None:  # configured but not registered yet (or retired meanwhile)
                self._count("", UnknownService.reason)
                raise UnknownService("no external service of that name has webhooks here")
            if delivery.ping or delivery.asks_nothing:
                await store.note_delivery(conn, ref.id, now)
                outcome = "ping" if delivery.ping else "ignored"
                stored = None
            else:
                stored = await store.store_delivery(
                    conn, ref.id, delivery_id=delivery.delivery_id, event=delivery.event,
                    headers=wh.kept_headers(headers), body=body, now=now,
                )  # fmt: skip
                outcome = "stored" if stored is not None else "duplicate"
        self._count(label, outcome)
        if stored is not None and self.on_stored is not None:
            self.on_stored()
        return Received(outcome, delivery.event, delivery.delivery_id)

    def _count(self, service: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_delivery(service, outcome)

    async def _note_rejection(self, service: str, refused: wh.WebhookRejected) -> None:
        now = self.clock()
        async with self.engine.begin() as conn:
            ref = await store.live_service(conn, service)
            if ref is not None:
                await store.note_rejection(conn, ref.id, f"{refused.reason}: {refused}", now)
