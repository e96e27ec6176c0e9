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

import asyncio
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

    def __post_init__(self) -> None:
        self._ids: dict[str, int] = {}  # external service ids by name (they never change)
        self._writer = GroupCommit(self.engine, self.clock)

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
        svc_id = await self._service_id(service)
        if svc_id is None:  # configured but not registered yet (or retired meanwhile)
            self._count("", UnknownService.reason)
            raise UnknownService("no external service of that name has webhooks here")
        if delivery.ping or delivery.asks_nothing:
            async with self.engine.begin() as conn:
                await store.note_delivery(conn, svc_id, self.clock())
            outcome = "ping" if delivery.ping else "ignored"
        else:
            item = store.NewDelivery(
                svc_id, delivery.delivery_id, delivery.event, wh.kept_headers(headers), body
            )
            stored = await self._writer.add(item)
            outcome = "stored" if stored else "duplicate"
            if stored and self.on_stored is not None:
                self.on_stored()
        self._count(label, outcome)
        return Received(outcome, delivery.event, delivery.delivery_id)

    async def _service_id(self, name: str) -> int | None:
        known = self._ids.get(name)
        if known is not None:
            return known
        async with self.engine.connect() as conn:
            ref = await store.live_service(conn, name)
        if ref is not None:
            self._ids[name] = ref.id
        return None if ref is None else ref.id

    def _count(self, service: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.observe_delivery(service, outcome)

    async def _note_rejection(self, service: str, refused: wh.WebhookRejected) -> None:
        now = self.clock()
        async with self.engine.begin() as conn:
            ref = await store.live_service(conn, service)
            if ref is not None:
                await store.note_rejection(conn, ref.id, f"{refused.reason}: {refused}", now)


class GroupCommit:
    """Stores deliveries in shared transactions: a delivery that arrives while one is being
    written waits for the next, which takes every delivery queued by then (up to
    ``MAX_BATCH``). Each caller returns only once its delivery is committed (durable before
    the 2xx), and a burst costs one transaction per batch instead of one per delivery. No
    background task: the first caller to find no write under way writes for everyone."""

    MAX_BATCH = 500

    def __init__(self, engine: AsyncEngine, clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._clock = clock
        self._queue: list[tuple[store.NewDelivery, asyncio.Future[bool]]] = []
        self._writing = False

    async def add(self, item: store.NewDelivery) -> bool:
        """Whether it was stored (False: a redelivery)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if not self._writing:
            self._writing = True
            try:
                while self._queue:
                    batch = self._queue[: self.MAX_BATCH]
                    del self._queue[: self.MAX_BATCH]
                    await asyncio.shield(self._write(batch))
            finally:
                self._writing = False
                # Cancelled (shutdown): nobody would write what is still queued; those
                # deliveries get an error answer (the host delivers them again).
                queued, self._queue = self._queue, []
                for _, waiting in queued:
                    if not waiting.done():
                        waiting.set_exception(RuntimeError("shutting down"))
        return await future

    async def _write(self, batch: list[tuple[store.NewDelivery, asyncio.Future[bool]]]) -> None:
        try:
            async with self._engine.begin() as conn:
                done = await store.store_deliveries(conn, [i for i, _ in batch], self._clock())
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else
                                         RuntimeError("cancelled"))  # fmt: skip
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), stored in zip(batch, done, strict=True):
            if not future.done():
                future.set_result(stored)
