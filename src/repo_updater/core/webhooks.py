"""Code-host webhook deliveries: verify the signature, name the delivery, and say what it asks
for. Pure: no I/O, no clock. The receiver (``service_layer.webhooks``) calls ``verify`` and
``parse`` before it stores a delivery, and the worker calls ``parse`` again on the stored body.

How each host signs (the secret is the one set on the host's hook):

========== ================================= ==========================================
host       signature header                  value
========== ================================= ==========================================
GitHub     ``X-Hub-Signature-256``           ``sha256=`` + hex HMAC-SHA256 of the body
GitLab     ``X-Gitlab-Token``                the secret itself (GitLab does not sign)
Gitea      ``X-Gitea-Signature``             hex HMAC-SHA256 of the body
Bitbucket  ``X-Hub-Signature``               ``sha256=`` + hex HMAC-SHA256 of the body
========== ================================= ==========================================

Every comparison is constant-time (``hmac.compare_digest``).

What a delivery asks for (``Delivery``): ``repos`` to sync one by one (a repository event:
the host is asked again, so the order deliveries arrive in does not matter), ``pulls`` whose
changesets need a sync, ``repo_pulls``: repos all of whose changesets need a sync (a commit
status names a commit, not a pull request). A ping, or an event kind we do not act on, asks
for nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from repo_updater.core.domain import MAX_PULL_NUMBER, HostKind

MAX_DELIVERY_BYTES = 1024 * 1024  # a larger body is refused (413)
MAX_DELIVERY_ID = 200  # characters


class WebhookRejected(Exception):
    """A delivery that is refused: ``status`` is the HTTP answer, ``reason`` a fixed label
    (metrics); the message never quotes the body or a secret."""

    status = 400
    reason = "malformed"


class BadSignature(WebhookRejected):
    status = 401
    reason = "bad_signature"


class Malformed(WebhookRejected):
    status = 400
    reason = "malformed"


@dataclass(frozen=True, slots=True)
class RepoHint:
    """A repository a delivery names: the host's id, and its host-relative name as the
    delivery says it (Bitbucket Server has no lookup by id: the name is used there)."""

    external_id: str
    name: str


@dataclass(frozen=True, slots=True)
class PullHint:
    repo: RepoHint
    number: int


@dataclass(frozen=True, slots=True)
class Delivery:
    event: str  # the host's event name (``repository``, ``Merge Request Hook``...)
    delivery_id: str
    action: str = ""  # ``archived``, ``project_update``, ``pr:merged``...
    repos: tuple[RepoHint, ...] = ()
    pulls: tuple[PullHint, ...] = ()
    repo_pulls: tuple[RepoHint, ...] = ()
    ping: bool = False

    @property
    def asks_nothing(self) -> bool:
        return not (self.repos or self.pulls or self.repo_pulls)


# --- signatures -------------------------------------------------------------------------------


def _hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(kind: HostKind, secret: str, body: bytes) -> dict[str, str]:
    """The signature header a host sends with ``body`` (the emulator signs with it)."""
    if kind is HostKind.GITHUB:
        return {"X-Hub-Signature-256": "sha256=" + _hmac_hex(secret, body)}
    if kind is HostKind.GITLAB:
        return {"X-Gitlab-Token": secret}
    if kind is HostKind.GITEA:
        return {"X-Gitea-Signature": _hmac_hex(secret, body)}
    return {"X-Hub-Signature": "sha256=" + _hmac_hex(secret, body)}


def verify(kind: HostKind, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise ``BadSignature`` unless ``headers`` carry a valid signature of ``body``.
    ``headers`` must look names up ignoring case (aiohttp's and httpx's do)."""
    if not secret:
        raise BadSignature("no webhook secret is configured for this service")
    [(name, expected)] = sign(kind, secret, body).items()
    given = headers.get(name)
    if given is None:
        raise BadSignature(f"the delivery has no {name} header")
    if not hmac.compare_digest(given.strip().lower().encode(), expected.lower().encode()):
        raise BadSignature(f"the {name} signature does not match")


# --- names ------------------------------------------------------------------------------------

_EVENT_HEADERS = {
    HostKind.GITHUB: ("X-GitHub-Event",),
    HostKind.GITLAB: ("X-Gitlab-Event",),
    HostKind.GITEA: ("X-Gitea-Event-Type", "X-Gitea-Event"),
    HostKind.BITBUCKET_SERVER: ("X-Event-Key",),
}
_ID_HEADERS = {
    HostKind.GITHUB: ("X-GitHub-Delivery",),
    HostKind.GITLAB: ("X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID", "Idempotency-Key"),
    HostKind.GITEA: ("X-Gitea-Delivery",),
    HostKind.BITBUCKET_SERVER: ("X-Request-Id",),
}
# The headers kept with a stored delivery (what ``parse`` reads again later).
KEPT_HEADERS = tuple(sorted({h for hs in (*_EVENT_HEADERS.values(), *_ID_HEADERS.values())
                             for h in hs}))  # fmt: skip


def event_name(kind: HostKind, headers: Mapping[str, str]) -> str:
    for name in _EVENT_HEADERS[kind]:
        value = headers.get(name, "").strip()
        if value:
            return value[:100]
    raise Malformed(f"the delivery has no {_EVENT_HEADERS[kind][-1]} header")


def delivery_id(kind: HostKind, headers: Mapping[str, str], body: bytes) -> str:
    """The host's id of the delivery (a redelivery repeats it); without one (older GitLab),
    the body's SHA-256, so a byte-identical repeat is still recognised."""
    for name in _ID_HEADERS[kind]:
        value = headers.get(name, "").strip()
        if value:
            if len(value) > MAX_DELIVERY_ID or not value.isprintable():
                raise Malformed(f"the {name} header is not a delivery id")
            return value
    return "sha256:" + hashlib.sha256(body).hexdigest()


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {h: headers[h][:MAX_DELIVERY_ID] for h in KEPT_HEADERS if h in headers}


# --- payloads ---------------------------------------------------------------------------------


def parse(kind: HostKind, headers: Mapping[str, str], body: bytes) -> Delivery:
    """What a (verified) delivery asks for. Raises ``Malformed`` for a body that is not a
    JSON object or lacks what its event must carry."""
    event = event_name(kind, headers)
    did = delivery_id(kind, headers, body)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise Malformed("the body is not a JSON object")
    try:
        return _PARSERS[kind](event, did, payload)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise Malformed(f"{event} payload without what it must carry ({_what(exc)})") from None


def _what(exc: Exception) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else type(exc).__name__


def _obj(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("not an object")
    return value


def _id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ValueError("not an id")
    return str(value)


def _number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_PULL_NUMBER:
        raise ValueError("not a pull request number")
    return value


def _name(value: Any) -> str:
    if not isinstance(value, str) or "/" not in value.strip("/") or len(value) > 500:
        raise ValueError("not a full name")
    return value.strip("/")


GITHUB_REPO_ACTIONS = frozenset(
    {"archived", "unarchived", "renamed", "transferred", "deleted", "privatized", "publicized",
     "edited", "created"}
)  # fmt: skip
GITHUB_PULL_EVENTS = frozenset(
    {"pull_request", "pull_request_review", "pull_request_review_comment",
     "pull_request_review_thread"}
)  # fmt: skip


def _github_repo(payload: dict[str, Any]) -> RepoHint:
    repo = _obj(payload["repository"])
    return RepoHint(_id(repo["id"]), _name(repo["full_name"]))


def _github(event: str, did: str, p: dict[str, Any]) -> Delivery:
    action = str(p.get("action") or "")[:100]
    if event == "ping":
        return Delivery(event, did, ping=True)
    if event == "repository":
        repo = _github_repo(p)
        asks = (repo,) if action in GITHUB_REPO_ACTIONS else ()
        return Delivery(event, did, action, repos=asks)
    if event in GITHUB_PULL_EVENTS:
        number = _number(_obj(p["pull_request"])["number"])
        return Delivery(event, did, action, pulls=(PullHint(_github_repo(p), number),))
    if event in ("check_suite", "check_run"):
        repo = _github_repo(p)
        run = _obj(p[event])
        prs = run.get("pull_requests") or []
        if not isinstance(prs, list):
            raise TypeError("pull_requests")
        pulls = tuple(PullHint(repo, _number(_obj(pr)["number"])) for pr in prs)
        # A check of a fork's pull request lists none: every changeset of the repo then.
        return Delivery(event, did, action, pulls=pulls, repo_pulls=() if pulls else (repo,))
    if event == "status":
        return Delivery(event, did, str(p.get("state") or ""), repo_pulls=(_github_repo(p),))
    return Delivery(event, did, action)  # another event: stored nowhere, asks nothing


GITLAB_PROJECT_EVENTS = frozenset(
    {"project_update", "project_rename", "project_transfer", "project_destroy",
     "project_create"}
)  # fmt: skip


def _gitlab_project(p: dict[str, Any]) -> RepoHint:
    project = _obj(p["project"])
    return RepoHint(_id(project["id"]), _name(project["path_with_namespace"]))


def _gitlab(event: str, did: str, p: dict[str, Any]) -> Delivery:
    system = str(p.get("event_name") or "")
    if system in GITLAB_PROJECT_EVENTS:
        # System hooks do not say what changed: the project is fetched again.
        repo = RepoHint(_id(p["project_id"]), _name(p["path_with_namespace"]))
        return Delivery(event, did, system, repos=(repo,))
    kind = str(p.get("object_kind") or "")
    if kind == "merge_request":
        number = _number(_obj(p["object_attributes"])["iid"])
        action = str(_obj(p["object_attributes"]).get("action") or "")[:100]
        return Delivery(event, did, action, pulls=(PullHint(_gitlab_project(p), number),))
    if kind in ("pipeline", "note"):
        mr = p.get("merge_request")
        if mr is None:  # a pipeline of a branch, a note on an issue or a commit
            return Delivery(event, did, kind)
        number = _number(_obj(mr)["iid"])
        return Delivery(event, did, kind, pulls=(PullHint(_gitlab_project(p), number),))
    if system or kind:
        return Delivery(event, did, system or kind)
    raise ValueError("no object_kind or event_name")


def _gitea_repo(p: dict[str, Any]) -> RepoHint:
    repo = _obj(p["repository"])
    return RepoHint(_id(repo["id"]), _name(repo["full_name"]))


def _gitea(event: str, did: str, p: dict[str, Any]) -> Delivery:
    action = str(p.get("action") or "")[:100]
    if event == "repository":
        return Delivery(event, did, action, repos=(_gitea_repo(p),))
    if event.startswith("pull_request"):
        pull = p.get("pull_request")
        number = _number(_obj(pull)["number"] if pull is not None else p["number"])
        return Delivery(event, did, action, pulls=(PullHint(_gitea_repo(p), number),))
    if event == "status":
        return Delivery(event, did, str(p.get("state") or ""), repo_pulls=(_gitea_repo(p),))
    return Delivery(event, did, action)


def _bitbucket_repo(r: Any) -> RepoHint:
    repo = _obj(r)
    key = _obj(repo["project"])["key"]
    if not isinstance(key, str) or not isinstance(repo["slug"], str):
        raise TypeError("project key or slug")
    return RepoHint(_id(repo["id"]), _name(f"{key}/{repo['slug']}"))


def _bitbucket(event: str, did: str, p: dict[str, Any]) -> Delivery:
    if event == "diagnostics:ping":
        return Delivery(event, did, ping=True)
    if event == "repo:modified":
        return Delivery(event, did, event, repos=(_bitbucket_repo(p["new"]),))
    if event.startswith("pr:"):
        pull = _obj(p["pullRequest"])
        repo = _bitbucket_repo(_obj(pull["toRef"])["repository"])
        return Delivery(event, did, event, pulls=(PullHint(repo, _number(pull["id"])),))
    return Delivery(event, did, event)


_PARSERS = {
    HostKind.GITHUB: _github,
    HostKind.GITLAB: _gitlab,
    HostKind.GITEA: _gitea,
    HostKind.BITBUCKET_SERVER: _bitbucket,
}


def synced_by(reason: str | None) -> str | None:
    """How a changeset's last sync came about, from its request's reason: ``webhook`` (a
    delivery asked), ``poll`` (its schedule, or a repo sync that saw its repo change),
    ``request`` (a person: tracking, a forced sync, a single-repo sync); None before any."""
    if reason is None:
        return None
    if reason.startswith("webhook:"):
        return "webhook"
    if reason == "scheduled" or reason.startswith("repo_"):
        return "poll"
    return "request"


@dataclass(slots=True)
class Batch:
    """What a batch of deliveries asks for, each thing once: a repo named by ten deliveries
    is fetched once (the host's answer is the truth, whatever their order)."""

    repos: dict[str, RepoHint] = field(default_factory=dict)  # by external id
    pulls: set[PullHint] = field(default_factory=set)
    repo_pulls: dict[str, RepoHint] = field(default_factory=dict)

    def add(self, delivery: Delivery) -> None:
        for repo in delivery.repos:
            self.repos[repo.external_id] = repo  # the latest delivery's name wins
        self.pulls.update(delivery.pulls)
        for repo in delivery.repo_pulls:
            self.repo_pulls[repo.external_id] = repo
