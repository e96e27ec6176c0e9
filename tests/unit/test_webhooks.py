"""core.webhooks: each host's signature, and what every event kind asks for (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from repo_updater.core import webhooks as wh
from repo_updater.core.domain import HostKind

SECRET = "s3cret-hook"
GH, GL, GT, BB = HostKind.GITHUB, HostKind.GITLAB, HostKind.GITEA, HostKind.BITBUCKET_SERVER
REPO = {"id": 7, "full_name": "acme/api", "name": "api"}
BB_REPO = {"id": 7, "slug": "api", "project": {"key": "ACME"}}


def signed(
    kind: HostKind, event: str, payload: Any, secret: str = SECRET
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    event_header = {GH: "X-GitHub-Event", GL: "X-Gitlab-Event", GT: "X-Gitea-Event-Type",
                    BB: "X-Event-Key"}[kind]  # fmt: skip
    id_header = {GH: "X-GitHub-Delivery", GL: "X-Gitlab-Event-UUID", GT: "X-Gitea-Delivery",
                 BB: "X-Request-Id"}[kind]  # fmt: skip
    return {event_header: event, id_header: "d-1", **wh.sign(kind, secret, body)}, body


@pytest.mark.parametrize("kind", list(HostKind))
def test_each_host_verifies_its_own_signature(kind: HostKind) -> None:
    headers, body = signed(kind, "x", {})
    wh.verify(kind, SECRET, headers, body)
    with pytest.raises(wh.BadSignature):
        wh.verify(kind, "another secret", headers, body)
    if kind is GL:  # GitLab sends the secret itself: the body is not signed
        wh.verify(kind, SECRET, headers, body + b" ")
    else:
        with pytest.raises(wh.BadSignature):
            wh.verify(kind, SECRET, headers, body + b" ")
    with pytest.raises(wh.BadSignature, match=r"no .* header"):
        wh.verify(kind, SECRET, {}, body)
    with pytest.raises(wh.BadSignature, match="no webhook secret"):
        wh.verify(kind, "", headers, body)


def test_signature_messages_never_quote_the_secret() -> None:
    headers, body = signed(GH, "ping", {})
    with pytest.raises(wh.BadSignature) as err:
        wh.verify(GH, SECRET + "x", headers, body)
    assert SECRET not in str(err.value)


REPO_CASES = [
    (GH, "repository", {"action": a, "repository": REPO})
    for a in ("archived", "unarchived", "renamed", "transferred", "deleted", "privatized",
              "publicized", "edited")
] + [
    (GL, "System Hook", {"event_name": e, "project_id": 7, "path_with_namespace": "acme/api"})
    for e in ("project_update", "project_rename", "project_destroy", "project_transfer")
] + [
    (GT, "repository", {"action": "archived", "repository": REPO}),
    (BB, "repo:modified", {"old": BB_REPO, "new": BB_REPO}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "event", "payload"), REPO_CASES)
def test_repository_events_ask_for_a_single_repo_sync(
    kind: HostKind, event: str, payload: dict[str, Any]
) -> None:
    headers, body = signed(kind, event, payload)
    d = wh.parse(kind, headers, body)
    assert d.delivery_id == "d-1"
    assert [r.external_id for r in d.repos] == ["7"]
    assert d.repos[0].name in ("acme/api", "ACME/api")
    assert not d.pulls and not d.ping


PR = {"number": 3}
PULL_CASES = [
    (GH, "pull_request", {"action": "closed", "pull_request": PR, "repository": REPO}),
    (GH, "pull_request_review", {"action": "submitted", "pull_request": PR, "repository": REPO}),
    (GH, "check_suite", {"check_suite": {"pull_requests": [PR]}, "repository": REPO}),
    (GH, "check_run", {"check_run": {"pull_requests": [PR]}, "repository": REPO}),
    (GL, "Merge Request Hook", {"object_kind": "merge_request", "object_attributes": {"iid": 3},
                                "project": {"id": 7, "path_with_namespace": "acme/api"}}),
    (GL, "Pipeline Hook", {"object_kind": "pipeline", "merge_request": {"iid": 3},
                           "project": {"id": 7, "path_with_namespace": "acme/api"}}),
    (GL, "Note Hook", {"object_kind": "note", "merge_request": {"iid": 3},
                       "project": {"id": 7, "path_with_namespace": "acme/api"}}),
    (GT, "pull_request", {"action": "closed", "pull_request": PR, "repository": REPO}),
    (GT, "pull_request_review_approved", {"number": 3, "pull_request": PR, "repository": REPO}),
    (GT, "pull_request_review_rejected", {"number": 3, "pull_request": PR, "repository": REPO}),
    (BB, "pr:merged", {"pullRequest": {"id": 3, "toRef": {"repository": BB_REPO}}}),
    (BB, "pr:reviewer:approved", {"pullRequest": {"id": 3, "toRef": {"repository": BB_REPO}}}),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "event", "payload"), PULL_CASES)
def test_pull_request_events_ask_for_that_changeset(
    kind: HostKind, event: str, payload: dict[str, Any]
) -> None:
    d = wh.parse(kind, *signed(kind, event, payload))
    assert [(p.repo.external_id, p.number) for p in d.pulls] == [("7", 3)]
    assert not d.repos


@pytest.mark.parametrize("kind", [GH, GT])
def test_a_commit_status_asks_for_every_changeset_of_the_repo(kind: HostKind) -> None:
    d = wh.parse(kind, *signed(kind, "status", {"state": "success", "repository": REPO}))
    assert [r.external_id for r in d.repo_pulls] == ["7"]


def test_pings_and_other_events_ask_for_nothing() -> None:
    assert wh.parse(GH, *signed(GH, "ping", {"zen": "x"})).ping
    assert wh.parse(BB, *signed(BB, "diagnostics:ping", {})).ping
    assert wh.parse(GH, *signed(GH, "push", {"ref": "x"})).asks_nothing
    note = {"object_kind": "note", "merge_request": None}
    assert wh.parse(GL, *signed(GL, "Note Hook", note)).asks_nothing


@pytest.mark.parametrize(
    ("kind", "event", "body"),
    [
        (GH, "repository", b"not json"),
        (GH, "repository", b"[1, 2]"),
        (GH, "repository", json.dumps({"action": "archived"}).encode()),
        (
            GH,
            "repository",
            json.dumps(
                {"action": "archived", "repository": {"id": "x", "full_name": "a/b"}}
            ).encode(),
        ),
        (
            GH,
            "pull_request",
            json.dumps({"pull_request": {"number": -1}, "repository": REPO}).encode(),
        ),
        (GL, "System Hook", json.dumps({"event_name": "project_update"}).encode()),
        (GL, "x", json.dumps({}).encode()),
        (BB, "pr:merged", json.dumps({"pullRequest": {"id": 3}}).encode()),
        (GT, "repository", b"\xff\xfe"),
    ],
)
def test_malformed_payloads_are_refused(kind: HostKind, event: str, body: bytes) -> None:
    headers, _ = signed(kind, event, {})
    with pytest.raises(wh.Malformed):
        wh.parse(kind, headers, body)


def test_a_delivery_without_an_event_header_is_malformed() -> None:
    with pytest.raises(wh.Malformed, match="X-GitHub-Event"):
        wh.parse(GH, {}, b"{}")


def test_without_a_delivery_id_the_body_hash_names_it() -> None:
    body = b'{"object_kind": "note"}'
    a = wh.delivery_id(GL, {}, body)
    assert a.startswith("sha256:") and a == wh.delivery_id(GL, {}, body)
    assert a != wh.delivery_id(GL, {}, body + b" ")


def test_a_batch_names_each_repo_and_pull_once() -> None:
    batch = wh.Batch()
    for _ in range(3):
        batch.add(
            wh.parse(GH, *signed(GH, "repository", {"action": "archived", "repository": REPO}))
        )
        batch.add(
            wh.parse(GH, *signed(GH, "pull_request", {"pull_request": PR, "repository": REPO}))
        )
    assert list(batch.repos) == ["7"] and len(batch.pulls) == 1


@pytest.mark.parametrize(
    ("reason", "by"),
    [(None, None), ("webhook:pull_request", "webhook"), ("webhook:repo_archived", "webhook"),
     ("scheduled", "poll"), ("repo_archived", "poll"), ("tracked", "request"), ("api", "request")],
)  # fmt: skip
def test_synced_by(reason: str | None, by: str | None) -> None:
    assert wh.synced_by(reason) == by
