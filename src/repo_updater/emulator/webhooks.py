"""The emulator's webhooks: registrations per host, and real signed deliveries in each host's
format when the emulated world changes (``HostState`` calls ``notify``): archive, unarchive,
rename, transfer, delete, visibility, pull request state, review and check changes.

Each delivery is POSTed to every hook of its host with that host's headers and signature
(``core.webhooks.sign``: GitHub ``X-Hub-Signature-256``, GitLab ``X-Gitlab-Token``, Gitea
``X-Gitea-Signature``, Bitbucket Server ``X-Hub-Signature``), retried on a non-2xx or a
connection error, in the background (the change that caused it does not wait). Switches per
host (``HookFaults``): drop deliveries (never sent, as a host whose delivery queue lost them)
or duplicate them (sent twice with the same delivery id, as a host's redelivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from repo_updater.core.domain import HostKind
from repo_updater.core.webhooks import sign
from repo_updater.emulator.state import EmulatedPull, EmulatedRepo

log = logging.getLogger(__name__)

KEEP_LOG = 2000  # deliveries remembered per host


@dataclass(slots=True)
class Hook:
    id: int
    url: str
    secret: str


@dataclass(slots=True)
class HookFaults:
    drop_rate: float = 0.0  # fraction of deliveries never sent (drawn per delivery)
    drop_next: int = 0  # the next N deliveries are never sent
    duplicate_rate: float = 0.0  # fraction sent twice, same delivery id
    duplicate_next: int = 0
    retries: int = 3  # more attempts after a failed one
    retry_delay: float = 0.2  # seconds, doubling


@dataclass(slots=True)
class SentDelivery:
    hook: int
    event: str
    action: str
    delivery_id: str
    repo: str
    status: int | None = None  # the last attempt's answer (None: no answer)
    attempts: int = 0
    dropped: bool = False
    duplicated: bool = False


@dataclass(slots=True)
class _HostHooks:
    hooks: list[Hook] = field(default_factory=list)
    faults: HookFaults = field(default_factory=HookFaults)
    log: list[SentDelivery] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Change:
    """What changed: ``what`` is one of archived, unarchived, renamed, transferred, deleted,
    privatized, publicized (a repo), or pull_state, review, check (a pull request)."""

    what: str
    repo: EmulatedRepo
    pull: EmulatedPull | None = None
    old_name: str = ""


class WebhookSender:
    def __init__(self, seed: int | None = None) -> None:
        self._hosts = {kind: _HostHooks() for kind in HostKind}
        self._ids = itertools.count(1)
        self._random = random.Random(seed)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.base_url = ""  # the emulator's URL (web links in payloads)

    # --- registrations ----------------------------------------------------------------------

    def add_hook(self, kind: HostKind, url: str, secret: str) -> Hook:
        hook = Hook(next(self._ids), url, secret)
        self._hosts[kind].hooks.append(hook)
        return hook

    def hooks(self, kind: HostKind) -> list[Hook]:
        return list(self._hosts[kind].hooks)

    def clear_hooks(self, kind: HostKind) -> None:
        self._hosts[kind].hooks.clear()

    def faults(self, kind: HostKind) -> HookFaults:
        return self._hosts[kind].faults

    def set_faults(self, kind: HostKind, faults: HookFaults) -> None:
        self._hosts[kind].faults = faults

    def deliveries(self, kind: HostKind) -> list[SentDelivery]:
        return list(self._hosts[kind].log)

    # --- sending ----------------------------------------------------------------------------

    def notify(self, kind: HostKind, change: Change) -> None:
        """Called by ``HostState`` on a change: build the payload now (the state may change
        again), send it in the background. Outside an event loop nothing is sent."""
        hooks = self._hosts[kind].hooks
        if not hooks:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        built = build(kind, change, self.base_url)
        if built is None:
            return
        event, action, payload = built
        body = json.dumps(payload).encode()
        for hook in hooks:
            task = loop.create_task(self._deliver(kind, hook, event, action, change, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, kind: HostKind, hook: Hook, event: str, action: str, change: Change, body: bytes
    ) -> None:
        state = self._hosts[kind]
        faults = state.faults
        delivery_id = str(uuid.uuid4())
        sent = SentDelivery(hook.id, event, action, delivery_id, change.repo.full_name)
        state.log.append(sent)
        del state.log[:-KEEP_LOG]
        if faults.drop_next > 0 or (faults.drop_rate and self._random.random() < faults.drop_rate):
            faults.drop_next = max(0, faults.drop_next - 1)
            sent.dropped = True
            return
        copies = 1
        if faults.duplicate_next > 0 or (
            faults.duplicate_rate and self._random.random() < faults.duplicate_rate
        ):
            faults.duplicate_next = max(0, faults.duplicate_next - 1)
            sent.duplicated, copies = True, 2
        headers = {"Content-Type": "application/json", **_headers(kind, event, delivery_id)}
        headers.update(sign(kind, hook.secret, body))
        for _ in range(copies):
            await self._post(hook.url, headers, body, sent, faults)

    async def _post(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        sent: SentDelivery,
        faults: HookFaults,
    ) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        delay = faults.retry_delay
        for attempt in range(faults.retries + 1):
            sent.attempts += 1
            try:
                async with self._session.post(url, data=body, headers=headers) as response:
                    sent.status = response.status
                    await response.read()
                    if 200 <= response.status < 300:
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                sent.status = None
                log.debug("webhook delivery to %s failed: %s", url, exc)
            if attempt < faults.retries:
                await asyncio.sleep(delay)
                delay *= 2

    async def drain(self) -> None:
        """Wait for the deliveries under way (tests, benchmarks)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


def _headers(kind: HostKind, event: str, delivery_id: str) -> dict[str, str]:
    if kind is HostKind.GITHUB:
        return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id,
                "User-Agent": "GitHub-Hookshot/emulator"}  # fmt: skip
    if kind is HostKind.GITLAB:
        return {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery_id,
                "X-Gitlab-Webhook-UUID": delivery_id}  # fmt: skip
    if kind is HostKind.GITEA:
        main = event.split("_review")[0] if event.startswith("pull_request_review") else event
        return {"X-Gitea-Event": main, "X-Gitea-Event-Type": event,
                "X-Gitea-Delivery": delivery_id}  # fmt: skip
    return {"X-Event-Key": event, "X-Request-Id": delivery_id}


# --- payloads, as each host writes them (the fields repo-updater and common tools read) --------


def build(kind: HostKind, change: Change, base: str) -> tuple[str, str, dict[str, Any]] | None:
    """(event, action, payload) of a change on ``kind``; None where the host sends none."""
    return _BUILDERS[kind](change, base)


def _repo(repo: EmulatedRepo, base: str, prefix: str) -> dict[str, Any]:
    return {
        "id": repo.id,
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": {"login": repo.owner},
        "private": repo.private,
        "archived": repo.archived,
        "html_url": f"{base}{prefix}/{repo.full_name}",
    }


def _pull_action(pull: EmulatedPull) -> str:
    state = pull.state.value
    return {"CLOSED": "closed", "MERGED": "closed", "DRAFT": "converted_to_draft"}.get(
        state, "reopened" if pull.events and pull.events[-1].kind == "reopened" else "edited"
    )


def _github(change: Change, base: str) -> tuple[str, str, dict[str, Any]]:
    repo = _repo(change.repo, base, "/github")
    pull = change.pull
    if pull is None:
        payload: dict[str, Any] = {"action": change.what, "repository": repo}
        if change.what == "renamed":
            old = change.old_name.rpartition("/")[2]
            payload["changes"] = {"repository": {"name": {"from": old}}}
        return "repository", change.what, payload
    body: dict[str, Any]
    pr: dict[str, Any] = {"number": pull.number, "state": "closed" if pull.closed_at else "open",
          "merged": pull.merged_at is not None, "draft": pull.state.value == "DRAFT",
          "title": pull.title}  # fmt: skip
    if change.what == "review":
        review = pull.reviews[-1]
        opinion: dict[str, Any] = {
            "state": review.state.value.lower(),
            "user": {"login": review.author},
        }
        body = {"action": "submitted", "review": opinion, "pull_request": pr, "repository": repo}
        return "pull_request_review", "submitted", body
    if change.what == "check":
        suite = {"status": "completed", "conclusion": pull.check_state.value.lower(),
                 "pull_requests": [{"number": pull.number}]}  # fmt: skip
        body = {"action": "completed", "check_suite": suite, "repository": repo}
        return "check_suite", "completed", body
    action = _pull_action(pull)
    body = {"action": action, "number": pull.number, "pull_request": pr, "repository": repo}
    return "pull_request", action, body


def _gitlab(change: Change, base: str) -> tuple[str, str, dict[str, Any]]:
    repo, pull = change.repo, change.pull
    project = {"id": repo.id, "path_with_namespace": repo.full_name, "name": repo.name,
               "web_url": f"{base}/gitlab/{repo.full_name}"}  # fmt: skip
    if pull is None:
        event_name = {"renamed": "project_rename", "transferred": "project_transfer",
                      "deleted": "project_destroy"}.get(change.what, "project_update")  # fmt: skip
        body: dict[str, Any] = {
            "event_name": event_name, "project_id": repo.id, "name": repo.name,
            "path": repo.name, "path_with_namespace": repo.full_name,
            "project_visibility": "private" if repo.private else "public",
        }  # fmt: skip
        if change.old_name:
            body["old_path_with_namespace"] = change.old_name
        return "System Hook", event_name, body
    mr = {"iid": pull.number, "state": pull.state.value.lower()}
    if change.what == "check":
        status = {"status": pull.check_state.value.lower()}
        body = {"object_kind": "pipeline", "object_attributes": status,
                "merge_request": mr, "project": project}  # fmt: skip
        return "Pipeline Hook", "pipeline", body
    action = "approved" if change.what == "review" else {
        "CLOSED": "close", "MERGED": "merge"}.get(pull.state.value, "update")  # fmt: skip
    attrs = {**mr, "action": action, "title": pull.title}
    body = {"object_kind": "merge_request", "event_type": "merge_request",
            "object_attributes": attrs, "project": project}  # fmt: skip
    return "Merge Request Hook", action, body


def _gitea(change: Change, base: str) -> tuple[str, str, dict[str, Any]]:
    repo = _repo(change.repo, base, "/gitea")
    pull = change.pull
    if pull is None:
        return "repository", change.what, {"action": change.what, "repository": repo}
    body: dict[str, Any]
    if change.what == "check":
        body = {"state": pull.check_state.value.lower(), "sha": pull.head_ref,
                "repository": repo}  # fmt: skip
        return "status", "status", body
    pr: dict[str, Any] = {"number": pull.number, "state": "closed" if pull.closed_at else "open",
                          "merged": pull.merged_at is not None}  # fmt: skip
    if change.what == "review":
        event = f"pull_request_review_{pull.reviews[-1].state.value.lower()}"
        body = {"action": "reviewed", "number": pull.number, "pull_request": pr,
                "repository": repo}  # fmt: skip
        return event, "reviewed", body
    action = _pull_action(pull)
    return "pull_request", action, {"action": action, "number": pull.number,
                                    "pull_request": pr, "repository": repo}  # fmt: skip


def _bitbucket(change: Change, base: str) -> tuple[str, str, dict[str, Any]] | None:
    repo = change.repo
    data = {"id": repo.id, "slug": repo.name, "name": repo.name, "archived": repo.archived,
            "public": not repo.private, "project": {"key": repo.owner}}  # fmt: skip
    pull = change.pull
    if pull is None:
        if change.what == "deleted":
            return None  # Bitbucket Server sends no webhook for a deleted repository
        old = dict(data)
        if change.old_name:
            key, _, slug = change.old_name.rpartition("/")
            old.update(slug=slug, name=slug, project={"key": key})
        if change.what in ("archived", "unarchived"):
            old["archived"] = change.what == "unarchived"
        return "repo:modified", "repo:modified", {"old": old, "new": data}
    if change.what == "review":
        event = "pr:reviewer:approved"
    elif change.what == "check":
        event = "pr:modified"
    else:
        event = {"CLOSED": "pr:declined", "MERGED": "pr:merged"}.get(
            pull.state.value, "pr:opened" if pull.events else "pr:modified"
        )
    pr = {"id": pull.number, "state": pull.state.value, "toRef": {"repository": data}}
    return event, event, {"eventKey": event, "pullRequest": pr}


_BUILDERS = {
    HostKind.GITHUB: _github,
    HostKind.GITLAB: _gitlab,
    HostKind.GITEA: _gitea,
    HostKind.BITBUCKET_SERVER: _bitbucket,
}
