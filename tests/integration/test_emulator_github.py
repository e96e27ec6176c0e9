"""The GitHub emulator (REST, GraphQL), its fault middleware and the admin API, over real HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator.admin_client import EmulatorAdmin, EmulatorAdminError
from repo_updater.emulator.faults import fault_middleware
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import EmulatorState, HostState

GH = HostKind.GITHUB


@pytest.fixture
async def gh(emu: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.base_url(GH)) as client:
        yield client


def host(emu: RunningEmulator) -> HostState:
    return emu.state.host(GH)


# --- REST ------------------------------------------------------------------------------------


async def test_base_urls(emu: RunningEmulator) -> None:
    assert emu.url == f"http://127.0.0.1:{emu.port}"
    assert emu.base_url(HostKind.GITLAB) == f"{emu.url}/gitlab"
    assert emu.base_url(HostKind.BITBUCKET_SERVER) == f"{emu.url}/bitbucket"


async def test_org_repos_paginate_with_github_link_headers(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=250, org_prefix="acme")  # owner acme0
    base = f"{emu.base_url(GH)}/orgs/acme0/repos"
    first = await gh.get("/orgs/acme0/repos", params={"per_page": 100})
    assert first.status_code == 200
    assert first.headers["Link"] == (
        f'<{base}?per_page=100&page=2>; rel="next", <{base}?per_page=100&page=3>; rel="last"'
    )
    middle = await gh.get("/orgs/acme0/repos", params={"per_page": 100, "page": 2})
    assert [rel for rel in ('"prev"', '"next"', '"last"', '"first"')] == [
        part.split("rel=")[1] for part in middle.headers["Link"].split(", ")
    ]
    last = await gh.get(first.links["last"]["url"])
    assert "next" not in last.links and last.links["first"]["url"].endswith("page=1")
    ids = [r["id"] for page in (first, middle, last) for r in page.json()]
    # GitHub's default order for an org: newest first (sort=created, direction=desc).
    assert len(ids) == 250 and ids == sorted(ids, reverse=True) and len(set(ids)) == 250
    capped = await gh.get("/orgs/acme0/repos", params={"per_page": 1000})
    assert len(capped.json()) == 100
    default = await gh.get("/orgs/acme0/repos")
    assert len(default.json()) == 30


async def test_org_repos_sort_and_direction(emu: RunningEmulator, gh: httpx.AsyncClient) -> None:
    h = host(emu)
    for name in ("b", "c", "a"):
        h.add_repo("acme", name)
    h.add_repo("bob", "z")
    h.add_repo("bob", "y")
    h.users.add("bob")

    async def names(path: str, **params: str) -> list[str]:
        response = await gh.get(path, params=params)
        assert response.status_code == 200, response.text
        return [r["name"] for r in response.json()]

    assert await names("/orgs/acme/repos") == ["a", "c", "b"]  # newest first
    assert await names("/orgs/acme/repos", sort="created", direction="asc") == ["b", "c", "a"]
    assert await names("/orgs/acme/repos", sort="full_name") == ["a", "b", "c"]
    assert await names("/users/bob/repos") == ["y", "z"]  # users: full_name, ascending
    assert await names("/users/bob/repos", sort="created", direction="asc") == ["z", "y"]
    bad = await gh.get("/orgs/acme/repos", params={"sort": "stars"})
    assert bad.status_code == 422 and "sort" in bad.text


async def test_repo_json_fields_and_archived(emu: RunningEmulator, gh: httpx.AsyncClient) -> None:
    host(emu).add_repo("acme", "old", archived=True, fork=True, description="legacy")
    repo = (await gh.get("/repos/acme/old")).json()
    assert repo["full_name"] == "acme/old" and repo["name"] == "old"
    assert repo["archived"] is True and repo["fork"] is True and repo["private"] is False
    assert repo["html_url"] == f"{emu.base_url(GH)}/acme/old"
    assert repo["clone_url"] == repo["html_url"] + ".git"
    assert repo["description"] == "legacy" and repo["default_branch"] == "main"
    assert repo["updated_at"].endswith("Z") and isinstance(repo["node_id"], str)
    missing = await gh.get("/repos/acme/nope")
    assert missing.status_code == 404 and missing.json()["message"] == "Not Found"


async def test_user_owner_is_not_an_org(emu: RunningEmulator, gh: httpx.AsyncClient) -> None:
    host(emu).add_repo("alice", "dotfiles")
    host(emu).users.add("alice")
    assert (await gh.get("/orgs/alice/repos")).status_code == 404
    users = await gh.get("/users/alice/repos")
    assert [r["full_name"] for r in users.json()] == ["alice/dotfiles"]
    assert users.json()[0]["owner"]["type"] == "User"
    assert (await gh.get("/users/nobody/repos")).status_code == 404


async def test_pull_requests_rest(emu: RunningEmulator, gh: httpx.AsyncClient) -> None:
    host(emu).add_repo("acme", "app")
    new = {"title": "Bump", "head": "batch/bump", "base": "main", "body": "b", "draft": True}
    created = await gh.post("/repos/acme/app/pulls", json=new)
    assert created.status_code == 201
    pull = created.json()
    assert pull["number"] == 1 and pull["draft"] is True and pull["state"] == "open"
    again = await gh.post("/repos/acme/app/pulls", json=new)
    assert again.status_code == 422
    assert "already exists" in again.json()["errors"][0]["message"]
    bad = await gh.post("/repos/acme/app/pulls", json={"title": "x"})
    assert bad.status_code == 422
    listed = await gh.get("/repos/acme/app/pulls", params={"head": "acme:batch/bump"})
    assert [p["number"] for p in listed.json()] == [1]
    closed = await gh.patch("/repos/acme/app/pulls/1", json={"state": "closed"})
    assert closed.json()["state"] == "closed" and closed.json()["closed_at"]
    assert (await gh.get("/repos/acme/app/pulls")).json() == []
    assert len((await gh.get("/repos/acme/app/pulls", params={"state": "all"})).json()) == 1
    assert (await gh.get("/repos/acme/app/pulls/9")).status_code == 404
    assert host(emu).repo("acme/app").pulls[1].events[-1].kind == "closed"


async def test_writes_to_archived_repo_are_refused(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    host(emu).add_repo("acme", "app")
    host(emu).add_pull("acme/app", title="t")
    host(emu).set_archived("acme/app", True)
    new = {"title": "t", "head": "h", "base": "main"}
    for response in (
        await gh.post("/repos/acme/app/pulls", json=new),
        await gh.patch("/repos/acme/app/pulls/1", json={"state": "closed"}),
    ):
        assert response.status_code == 403
        assert response.json()["message"] == "Repository was archived so is read-only."
    assert host(emu).repo("acme/app").pulls[1].state is HostPullState.OPEN


# --- conditional requests, rate limits, faults ---------------------------------------------


async def test_etag_304_does_not_consume_rate_limit(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    host(emu).add_repo("acme", "app")
    host(emu).faults.rate_limit_remaining = 10
    first = await gh.get("/repos/acme/app")
    etag = first.headers["ETag"]
    assert first.headers["X-RateLimit-Remaining"] == "9"
    assert first.headers["X-RateLimit-Used"] == "4991"
    cached = await gh.get("/repos/acme/app", headers={"If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == etag and cached.headers["X-RateLimit-Remaining"] == "9"
    host(emu).set_archived("acme/app", True)
    changed = await gh.get("/repos/acme/app", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert changed.headers["X-RateLimit-Remaining"] == "8"


async def test_primary_rate_limit_exhaustion_and_reset(
    emu: RunningEmulator, gh: httpx.AsyncClient, admin: EmulatorAdmin
) -> None:
    host(emu).add_repo("acme", "app")
    await admin.set_faults(GH, rate_limit_remaining=1, rate_limit_reset_in=1)
    assert (await gh.get("/repos/acme/app")).status_code == 200
    limited = await gh.get("/repos/acme/app")
    assert limited.status_code == 403
    assert limited.json()["message"].startswith("API rate limit exceeded")
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert time.time() - 1 <= reset <= time.time() + 2
    await asyncio.sleep(max(0.0, reset - time.time()) + 0.05)
    again = await gh.get("/repos/acme/app")
    assert again.status_code == 200 and again.headers["X-RateLimit-Remaining"] == "4999"


async def test_secondary_rate_limit_errors_and_path_filter(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    host(emu).add_repo("acme", "app")
    faults = host(emu).faults
    faults.rate_limited_next, faults.retry_after = 1, 7
    secondary = await gh.get("/repos/acme/app")
    assert secondary.status_code == 403 and secondary.headers["Retry-After"] == "7"
    assert "secondary rate limit" in secondary.json()["message"]
    faults.errors_next, faults.error_status, faults.path_contains = 2, 503, "page=2"
    assert (await gh.get("/repos/acme/app")).status_code == 200  # not targeted
    assert (await gh.get("/orgs/acme/repos?page=2")).status_code == 503
    assert (await gh.get("/orgs/acme/repos?page=2")).status_code == 503
    assert (await gh.get("/orgs/acme/repos?page=2")).status_code == 200
    assert host(emu).request_count == 5


async def test_truncated_body_is_well_formed_http_with_invalid_json(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    emu.state.seed(GH, orgs=1, repos_per_org=5, org_prefix="acme")
    full = await gh.get("/orgs/acme0/repos")
    host(emu).faults.truncate_next = 1
    cut = await gh.get("/orgs/acme0/repos")
    assert cut.status_code == 200
    assert int(cut.headers["Content-Length"]) == len(cut.content) == len(full.content) // 2
    with pytest.raises(ValueError):
        cut.json()
    assert (await gh.get("/orgs/acme0/repos")).json() == full.json()


async def test_timeout_and_latency(emu: RunningEmulator) -> None:
    host(emu).add_repo("acme", "app")
    faults = host(emu).faults
    faults.timeouts_next, faults.timeout_seconds = 1, 5.0
    async with httpx.AsyncClient(base_url=emu.base_url(GH), timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/repos/acme/app")
        assert (await client.get("/repos/acme/app")).status_code == 200  # switch consumed
        faults.latency_ms = 300
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/repos/acme/app")
        faults.latency_ms = 60
        started = time.monotonic()
        assert (await client.get("/repos/acme/app")).status_code == 200
        assert time.monotonic() - started >= 0.05


async def test_token_is_required_when_set(emu: RunningEmulator, gh: httpx.AsyncClient) -> None:
    host(emu).add_repo("acme", "app")
    host(emu).token = "t0ken"
    denied = await gh.get("/repos/acme/app")
    assert denied.status_code == 401 and denied.json()["message"] == "Bad credentials"
    assert (
        await gh.get("/repos/acme/app", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    for headers in (
        {"Authorization": "Bearer t0ken"},
        {"Authorization": "token t0ken"},
        {"PRIVATE-TOKEN": "t0ken"},
    ):
        assert (await gh.get("/repos/acme/app", headers=headers)).status_code == 200
    assert (await gh.get("/repos/acme/app", auth=("user", "t0ken"))).status_code == 200


async def test_middleware_gitlab_style_answers_429_with_ratelimit_headers() -> None:
    state = EmulatorState()
    lab = state.host(HostKind.GITLAB)

    async def hello(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[fault_middleware(lab, "gitlab")])
    app.router.add_get("/hello", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            ok = await client.get("/hello")
            assert ok.headers["RateLimit-Limit"] == "5000" and "X-RateLimit-Limit" not in ok.headers
            lab.faults.rate_limited_next, lab.faults.retry_after = 1, 3
            limited = await client.get("/hello")
            assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
            lab.faults.rate_limit_remaining = 0
            primary = await client.get("/hello")
            assert primary.status_code == 429 and primary.headers["RateLimit-Remaining"] == "0"
            assert "Retry-After" in primary.headers
    finally:
        await runner.cleanup()


# --- GraphQL ---------------------------------------------------------------------------------

PR_FIELDS = """
number title url state isDraft additions deletions headRefName baseRefName updatedAt
createdAt closedAt mergedAt reviewDecision
latestOpinionatedReviews(last: 10) { nodes { state author { login } } }
commits(last: 1) { nodes { commit { statusCheckRollup { state } } } }
timelineItems(first: 50) {
  totalCount
  nodes {
    __typename
    ... on PullRequestReview { state author { login } submittedAt }
    ... on ClosedEvent { createdAt actor { login } }
    ... on MergedEvent { createdAt }
    ... on ReopenedEvent { createdAt }
  }
}
"""


async def graphql(gh: httpx.AsyncClient, query: str) -> dict[str, object]:
    response = await gh.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_graphql_aliases_states_reviews_checks_timeline(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    h = host(emu)
    h.add_repo("acme", "a").review_required = True  # a branch rule: reviewDecision is set
    h.add_repo("acme", "b")  # no rule: reviewDecision is null, as on GitHub
    h.add_pull("acme/a", title="draft", state=HostPullState.DRAFT)  # a#1
    h.add_pull("acme/a", title="reviewed")  # a#2
    h.add_review("acme/a", 2, author="ann", state=ReviewState.APPROVED)
    h.add_review("acme/a", 2, author="bob", state=ReviewState.CHANGES_REQUESTED)
    h.set_check_state("acme/a", 2, CheckState.FAILED)
    h.add_pull("acme/b", title="merged")  # b#1
    h.add_review("acme/b", 1, author="ann", state=ReviewState.APPROVED)
    h.set_check_state("acme/b", 1, CheckState.PASSED)
    h.set_pull_state("acme/b", 1, HostPullState.MERGED)
    h.add_pull("acme/b", title="reopened")  # b#2
    h.set_pull_state("acme/b", 2, HostPullState.CLOSED)
    h.set_pull_state("acme/b", 2, HostPullState.OPEN)
    h.set_check_state("acme/b", 2, CheckState.UNKNOWN)
    query = f"""{{
      x: repository(owner: "acme", name: "a") {{
        nameWithOwner isArchived
        d: pullRequest(number: 1) {{ {PR_FIELDS} }}
        r: pullRequest(number: 2) {{ {PR_FIELDS} }}
      }}
      y: repository(owner: "acme", name: "b") {{
        m: pullRequest(number: 1) {{ {PR_FIELDS} }}
        o: pullRequest(number: 2) {{ {PR_FIELDS} }}
      }}
      rateLimit {{ cost remaining resetAt }}
    }}"""
    body = await graphql(gh, query)
    assert "errors" not in body
    data = body["data"]
    assert isinstance(data, dict)
    x, y = data["x"], data["y"]
    assert x["nameWithOwner"] == "acme/a" and x["isArchived"] is False
    assert (x["d"]["state"], x["d"]["isDraft"]) == ("OPEN", True)
    assert x["d"]["reviewDecision"] == "REVIEW_REQUIRED"
    assert x["d"]["url"] == f"{emu.base_url(GH)}/acme/a/pull/1"
    assert x["r"]["reviewDecision"] == "CHANGES_REQUESTED"
    assert x["r"]["commits"]["nodes"][0]["commit"]["statusCheckRollup"] == {"state": "FAILURE"}
    reviews = x["r"]["timelineItems"]["nodes"]
    assert [(n["author"]["login"], n["state"]) for n in reviews] == [
        ("ann", "APPROVED"),
        ("bob", "CHANGES_REQUESTED"),
    ]
    merged = y["m"]
    assert merged["state"] == "MERGED" and merged["mergedAt"] and merged["closedAt"]
    assert merged["reviewDecision"] is None
    assert merged["latestOpinionatedReviews"]["nodes"] == [
        {"state": "APPROVED", "author": {"login": "ann"}}
    ]
    assert merged["commits"]["nodes"][0]["commit"]["statusCheckRollup"]["state"] == "SUCCESS"
    assert [n["__typename"] for n in merged["timelineItems"]["nodes"]] == [
        "PullRequestReview",
        "MergedEvent",
        "ClosedEvent",
    ]
    reopened = y["o"]
    assert reopened["state"] == "OPEN" and reopened["closedAt"] is None
    assert reopened["commits"]["nodes"][0]["commit"]["statusCheckRollup"] is None
    assert [n["__typename"] for n in reopened["timelineItems"]["nodes"]] == [
        "ClosedEvent",
        "ReopenedEvent",
    ]
    assert data["rateLimit"]["cost"] == 1 and data["rateLimit"]["remaining"] == 5000


async def test_graphql_not_found_has_type_path_and_null_data(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    host(emu).add_repo("acme", "a")
    host(emu).add_pull("acme/a", title="t")
    body = await graphql(
        gh,
        """{ r0: repository(owner: "acme", name: "a") {
               p0: pullRequest(number: 1) { number } p1: pullRequest(number: 99) { number } }
             r1: repository(owner: "acme", name: "gone") { p2: pullRequest(number: 1) { number } }
           }""",
    )
    assert body["data"] == {"r0": {"p0": {"number": 1}, "p1": None}, "r1": None}
    errors = body["errors"]
    assert isinstance(errors, list)
    assert [(e["type"], e["path"]) for e in errors] == [
        ("NOT_FOUND", ["r0", "p1"]),
        ("NOT_FOUND", ["r1"]),
    ]
    assert "acme/gone" in errors[1]["message"]


async def test_graphql_bad_queries(gh: httpx.AsyncClient) -> None:
    invalid = await graphql(gh, "{ viewer { login } }")
    assert "data" not in invalid and "viewer" in str(invalid["errors"])
    syntax = await graphql(gh, "{ repository(")
    assert "Syntax Error" in str(syntax["errors"])
    missing = await gh.post("/graphql", json={"variables": {}})
    assert missing.status_code == 400 and "query" in missing.json()["message"]


async def test_graphql_page_size_limit(emu: RunningEmulator, gh: httpx.AsyncClient) -> None:
    host(emu).add_repo("a", "b")
    host(emu).add_pull("a/b", title="t")
    body = await graphql(
        gh,
        '{ repository(owner: "a", name: "b") { pullRequest(number: 1) { '
        "timelineItems(first: 500) { totalCount } } } }",
    )
    assert "exceeds the limit of 100" in str(body["errors"])


# --- admin API -------------------------------------------------------------------------------


async def test_admin_round_trips(
    emu: RunningEmulator, admin: EmulatorAdmin, gh: httpx.AsyncClient
) -> None:
    repo = await admin.add_repo(GH, "acme", "app", description="d")
    assert repo["full_name"] == "acme/app" and repo["archived"] is False
    await admin.add_repo(GH, "alice", "dots", owner_type="user")
    assert "alice" in host(emu).users
    assert (await admin.archive(GH, "acme/app"))["archived"] is True
    assert (await gh.get("/repos/acme/app")).json()["archived"] is True
    assert (await admin.unarchive(GH, "acme/app"))["archived"] is False
    renamed = await admin.rename(GH, "acme/app", "application")
    assert renamed["full_name"] == "acme/application"
    moved = await gh.get("/repos/acme/app")  # the old name redirects to the repo by id
    assert moved.status_code == 301
    assert moved.headers["location"].endswith(f"/github/repositories/{renamed['id']}")
    pull = await admin.add_pull(GH, "acme/application", "Fix", state="DRAFT", check_state="PASSED")
    assert pull["number"] == 1 and pull["state"] == "DRAFT" and pull["check_state"] == "PASSED"
    changed = await admin.set_pull(
        GH, "acme/application", 1, state="MERGED", check_state="FAILED", review=("ann", "APPROVED")
    )
    assert changed["state"] == "MERGED" and changed["reviews"] == [
        {"author": "ann", "state": "APPROVED"}
    ]
    assert [e["kind"] for e in changed["events"]] == ["merged", "closed"]
    assert [p["number"] for p in await admin.pulls(GH, "acme/application")] == [1]
    await admin.set_pull(GH, "acme/application", 1, state="DELETED")
    assert await admin.pulls(GH, "acme/application") == []
    faults = await admin.set_faults(GH, errors_next=1, error_status=500, latency_ms=0)
    assert faults["errors_next"] == 1 and host(emu).faults.error_status == 500
    assert (await gh.get("/repos/acme/application")).status_code == 500
    assert (await admin.clear_faults(GH))["error_status"] == 502
    seeded = await admin.seed(GH, orgs=2, repos_per_org=3, pulls_per_repo=1, org_prefix="s")
    assert seeded == {"created": 6, "repos": 8}
    assert [r["name"] for r in await admin.repos(GH, owner="s1")] == ["repo-0", "repo-1", "repo-2"]
    stats = await admin.stats(GH)
    assert stats["repos"] == 8 and stats["pulls"] == 6 and stats["request_count"] == 3
    await admin.reset_stats(GH)
    assert (await admin.stats(GH))["request_count"] == 0
    await admin.set_token(GH, "sekret")
    assert (await gh.get("/repos/acme/application")).status_code == 401
    await admin.set_token(GH, None)
    deleted = await admin.delete(GH, "acme/application")
    assert deleted["deleted"]["full_name"] == "acme/application"
    assert (await gh.get("/repos/acme/application")).status_code == 404
    assert len(await admin.repos("bitbucket")) == 0


@pytest.mark.parametrize(
    ("call", "status", "fragment"),
    [
        (lambda a: a.set_faults(GH, explode=1), 400, "unknown fault field(s) explode"),
        (lambda a: a.set_faults(GH, errors_next="many"), 400, "errors_next"),
        (lambda a: a.set_faults(GH, errors_next=-1), 400, "must be >= 0"),
        (lambda a: a.set_faults(GH, error_status=200), 400, "error_status"),
        (lambda a: a.archive(GH, "acme/none"), 404, "no repository 'acme/none'"),
        (lambda a: a.rename(GH, "acme/app", ""), 400, "rename needs new_name"),
        (lambda a: a.add_repo(GH, "acme", "app"), 400, "already exists"),
        (lambda a: a.add_pull(GH, "acme/app", "t", state="WEIRD"), 400, "state"),
        (lambda a: a.set_pull(GH, "acme/app", 7, state="OPEN"), 404, "no pull request #7"),
        (lambda a: a.seed(GH, orgs=-1), 400, "orgs"),
        (lambda a: a.stats("nohost"), 404, "unknown host kind 'nohost'"),
    ],
)
async def test_admin_errors_are_clear(
    emu: RunningEmulator, admin: EmulatorAdmin, call: object, status: int, fragment: str
) -> None:
    host(emu).add_repo("acme", "app")
    assert callable(call)
    with pytest.raises(EmulatorAdminError) as caught:
        await call(admin)
    assert caught.value.status == status
    assert fragment in str(caught.value)
    assert host(emu).faults.errors_next == 0 and len(host(emu).repos) == 1


async def test_admin_rejects_non_object_json(emu: RunningEmulator) -> None:
    async with httpx.AsyncClient(base_url=emu.url) as client:
        response = await client.put("/_admin/github/faults", content=b"[1, 2]")
        assert response.status_code == 400
        assert response.json() == {"error": "request body must be a JSON object"}
        assert (await client.get("/_admin")).json()["hosts"]["github"] == 0


async def test_renamed_repo_redirects_by_id_until_its_old_name_is_reused(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    h = host(emu)
    repo = h.add_repo("acme", "old")
    h.add_pull("acme/old", title="t")
    h.rename_repo("acme/old", "new")
    by_id = f"{emu.base_url(GH)}/repositories/{repo.id}"
    moved = await gh.get("/repos/acme/old")
    assert moved.status_code == 301 and moved.headers["location"] == by_id
    assert moved.json()["message"] == "Moved Permanently"
    pulls = await gh.get("/repos/acme/old/pulls", params={"state": "all"})
    assert pulls.status_code == 301 and pulls.headers["location"] == f"{by_id}/pulls?state=all"
    write = await gh.patch("/repos/acme/old/pulls/1", json={"state": "closed"})
    assert write.status_code == 307 and write.headers["location"] == f"{by_id}/pulls/1"
    assert (await gh.get(by_id)).json()["full_name"] == "acme/new"
    assert [p["number"] for p in (await gh.get(f"{by_id}/pulls")).json()] == [1]
    assert (await gh.get(f"{emu.base_url(GH)}/repositories/999")).status_code == 404
    h.add_repo("acme", "old")  # a new repo takes the old name: no more redirect
    assert (await gh.get("/repos/acme/old")).json()["id"] != repo.id
    h.delete_repo("acme/new")
    assert (await gh.get(by_id)).status_code == 404


async def test_org_without_repos_lists_empty_unknown_owner_is_404(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    h = host(emu)
    h.add_repo("acme", "only")
    h.rename_repo("acme/only", "elsewhere/only")  # moved away: acme is empty, not gone
    empty = await gh.get("/orgs/acme/repos")
    assert empty.status_code == 200 and empty.json() == []
    assert (await gh.get("/users/acme/repos")).json() == []
    assert [r["name"] for r in (await gh.get("/orgs/elsewhere/repos")).json()] == ["only"]
    assert (await gh.get("/orgs/ghost/repos")).status_code == 404
    assert (await gh.get("/users/ghost/repos")).status_code == 404


async def test_graphql_forbidden_repo_and_renamed_repo(
    emu: RunningEmulator, gh: httpx.AsyncClient
) -> None:
    h = host(emu)
    for name in ("open", "locked", "old"):
        h.add_repo("acme", name)
        h.add_pull(f"acme/{name}", title=name)
    h.repo("acme/locked").forbidden = True
    h.rename_repo("acme/old", "renamed")
    body = await graphql(
        gh,
        """query {
          a: repository(owner: "acme", name: "open") { pullRequest(number: 1) { title } }
          b: repository(owner: "acme", name: "locked") { pullRequest(number: 1) { title } }
          c: repository(owner: "acme", name: "old") {
            nameWithOwner pullRequest(number: 1) { title }
          }
        }""",
    )
    assert body["data"] == {
        "a": {"pullRequest": {"title": "open"}},
        "b": None,
        "c": {"nameWithOwner": "acme/renamed", "pullRequest": {"title": "old"}},
    }
    errors = body["errors"]
    assert isinstance(errors, list) and len(errors) == 1
    assert errors[0]["type"] == "FORBIDDEN" and errors[0]["path"] == ["b"]
    assert "SAML" in errors[0]["message"]
