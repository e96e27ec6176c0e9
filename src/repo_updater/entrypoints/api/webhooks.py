"""Webhook receivers: ``POST /webhooks/{service}``, one per configured external service.

``Access.OWN``: no API token (a code host has none); the delivery authenticates itself with
the host's signature, checked with the service's ``webhook_secret_env`` secret
(``service_layer.webhook_receiver``). The body is read raw (the signature covers its exact
bytes) and capped at 1 MiB.
"""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from repo_updater.core.webhooks import MAX_DELIVERY_BYTES, WebhookRejected
from repo_updater.entrypoints.api.common import the_app
from repo_updater.entrypoints.api.endpoint import Access, endpoint
from repo_updater.entrypoints.api.inputs import ApiError, PathModel, path_params
from repo_updater.entrypoints.api.models import WebhookAnswer, answer

routes = web.RouteTableDef()


class WebhookPath(PathModel):
    service: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]


@routes.post("/webhooks/{service}")
@endpoint(
    Access.OWN,
    "A code host's webhook delivery",
    description="Authenticated by the host's signature (GitHub X-Hub-Signature-256, GitLab "
    "X-Gitlab-Token, Gitea X-Gitea-Signature, Bitbucket Server X-Hub-Signature) with the "
    "service's webhook secret. 202 whatever the outcome: stored (processed within moments), "
    "duplicate (a redelivery: nothing changes), ping, or ignored (an event nothing acts on).",
    path=WebhookPath,
    response=WebhookAnswer,
    status=202,
    max_body=MAX_DELIVERY_BYTES,
    errors=(400, 401, 404, 413),
)
async def delivery(request: web.Request) -> web.Response:
    app = the_app(request)
    receiver = app.webhook_receiver
    try:
        service = path_params(request, WebhookPath).service
    except ApiError:
        service = "\0"  # not a service name: answered as an unknown service below
    body = await _read_capped(request)
    try:
        received = await receiver.receive(service, request.headers, body)
    except WebhookRejected as refused:
        raise ApiError(str(refused), status=refused.status) from None
    out = WebhookAnswer(
        outcome=received.outcome, event=received.event, delivery=received.delivery_id
    )
    return answer(out, 202)


async def _read_capped(request: web.Request) -> bytes | None:
    """The raw body, or None when it is over the limit (not read further)."""
    length = request.content_length
    if length is not None and length > MAX_DELIVERY_BYTES:
        return None
    parts, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_DELIVERY_BYTES:
            return None
        parts.append(chunk)
    return b"".join(parts)
