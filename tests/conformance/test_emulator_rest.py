"""The emulator's REST answers have the shape of the real hosts' (specs/github_rest.yaml,
specs/gitea_rest.yaml, checked against GitHub's OpenAPI and Gitea's Swagger descriptions by
scripts/check_conformance_specs.py): each documented field present with its type, nothing the
host does not send, and what the host leaves out of an endpoint (GitHub's pull-request-simple
diff stats, Gitea's list diff stats) left out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator.server import RunningEmulator
from tests.conformance.replay import excerpt
from tests.conformance.speccheck import endpoint_pattern, json_problems

TOKEN = "t0ken"


def problems(spec: dict[str, Any], endpoint: str, body: Any) -> list[str]:
    about = spec["endpoints"][endpoint]
    name = str(about["response"]).strip("[]").split("|")[0]
    schema = spec["schemas"][name]
    omit = frozenset(about.get("omit", []))
    items = body if str(about["response"]).startswith("[") else [body]
    assert items, f"{endpoint}: the sample answer is empty, nothing was checked"
    out: list[str] = []
    for i, item in enumerate(items):
        out += json_problems(f"{endpoint}[{i}]", schema["properties"], item, omit=omit)
        sent = item if isinstance(item, dict) else {}
        absent = [a for a in schema.get("absent", []) if a in sent]
        out += [f"{endpoint}[{i}].{a}: sent, but {name} has no such field" for a in absent]
    return out


async def answers(client: httpx.AsyncClient, samples: dict[str, str]) -> dict[str, Any]:
    out = {}
    for endpoint, target in samples.items():
        method, pattern = endpoint_pattern(endpoint)
        assert pattern.match(target.partition("?")[0]), (endpoint, target)
        response = await client.request(method, target)
        assert response.status_code == 200, (target, response.text)
        out[endpoint] = response.json()
    return out


@pytest.fixture
def seeded(emu: RunningEmulator) -> RunningEmulator:
    for kind in (HostKind.GITHUB, HostKind.GITEA):
        h = emu.state.host(kind)
        h.add_repo("acme", "app", description="the app")
        h.add_repo("acme", "secret", private=True, archived=True)
        h.add_repo("alice", "dotfiles")
        h.users.add("alice")
        h.settings.viewer = "alice"
        h.add_pull("acme/app", title="open")
        h.add_pull("acme/app", title="merged", state=HostPullState.MERGED)
        h.add_review("acme/app", 1, author="ann", state=ReviewState.APPROVED)
        h.set_check_state("acme/app", 1, CheckState.FAILED)
        h.set_check_state("acme/app", 2, CheckState.UNKNOWN)  # no statuses at all
    return emu


async def test_github_answers_as_documented(seeded: RunningEmulator) -> None:
    spec = excerpt("github_rest.yaml")
    samples = {
        "GET /orgs/{org}/repos": "/orgs/acme/repos",
        "GET /users/{username}/repos": "/users/alice/repos",
        "GET /user": "/user",
        "GET /user/repos": "/user/repos?affiliation=owner",
        "GET /repos/{owner}/{repo}": "/repos/acme/app",
        "GET /repos/{owner}/{repo}/pulls": "/repos/acme/app/pulls?state=all",
        "GET /repos/{owner}/{repo}/pulls/{pull_number}": "/repos/acme/app/pulls/2",
    }
    assert sorted(samples) == sorted(spec["endpoints"])  # every endpoint has a sample
    base = seeded.base_url(HostKind.GITHUB)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        got = await answers(client, samples)
    assert [p for e, body in got.items() for p in problems(spec, e, body)] == []


async def test_gitea_answers_as_documented(seeded: RunningEmulator) -> None:
    spec = excerpt("gitea_rest.yaml")
    base = seeded.base_url(HostKind.GITEA) + "/api/v1"
    async with httpx.AsyncClient(base_url=base) as client:
        shas = [p["head"]["sha"] for p in (await client.get("/repos/acme/app/pulls")).json()]
        samples = {
            "GET /orgs/{org}/repos": "/orgs/acme/repos",
            "GET /users/{username}/repos": "/users/alice/repos",
            "GET /repos/{owner}/{repo}": "/repos/acme/app",
            "GET /repos/{owner}/{repo}/pulls": "/repos/acme/app/pulls?state=all",
            "GET /repos/{owner}/{repo}/pulls/{index}": "/repos/acme/app/pulls/1",
            "GET /repos/{owner}/{repo}/pulls/{index}/reviews": "/repos/acme/app/pulls/1/reviews",
            "GET /repos/{owner}/{repo}/commits/{ref}/status": (
                f"/repos/acme/app/commits/{shas[0]}/status"
            ),
        }
        assert sorted(samples) == sorted(spec["endpoints"])
        got = await answers(client, samples)
        no_status = (await client.get(f"/repos/acme/app/commits/{'0' * 40}/status")).json()
    endpoint = "GET /repos/{owner}/{repo}/commits/{ref}/status"
    assert problems(spec, endpoint, no_status) == [] and no_status["state"] == ""
    assert [p for e, body in got.items() for p in problems(spec, e, body)] == []
