"""Batch specs through the HTTP API (real HTTP on loopback, the operation worker running, the
emulated GitHub; SQLite and PostgreSQL): a preview shows diffs and skips and stores nothing; an
apply runs to the end as an operation; a bad spec is a 400 naming the field."""

from __future__ import annotations

import asyncio
import time

from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.service_layer.api_tokens import Scope
from tests.support.api import api_client, make_token
from tests.support.specs import spec_data, synced_app


async def test_preview_apply_and_a_bad_spec_over_http(store_url: str, emu: RunningEmulator) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    gh.add_repo("acme", "app")
    gh.add_repo("acme", "old", archived=True)
    async with synced_app(store_url, emu) as app:
        stop = asyncio.Event()
        worker = asyncio.create_task(app.operation_worker.run(stop))
        try:
            token = await make_token(app.api_engine, Scope.WRITE, "spec-bot")
            async with api_client(app, token) as api:
                preview = await api.post("/api/batch-specs/preview", 200,
                                         json={"spec": spec_data()})  # fmt: skip
                got = {r["repo"]: r for r in preview["repos"]}
                assert got["github.test/acme/app"]["action"] == "change"
                assert "+      - uses: actions/checkout@v4" in got["github.test/acme/app"]["diff"]
                assert got["github.test/acme/old"]["reason"] == "archived"
                assert gh.writes.log == []
                assert await api.get("/api/operations") == {"items": [], "next": None}

                bad = await api.post("/api/batch-specs", 400,
                                     json={"spec": spec_data(branch="a..b")})  # fmt: skip
                assert "changeset.branch" in bad["error"]
                assert await api.get("/api/operations") == {"items": [], "next": None}

                created = await api.post("/api/batch-specs", 201, json={"spec": spec_data()})
                op_id = created["operation"]["id"]
                assert created["operation"]["kind"] == "apply_spec"
                start = time.monotonic()
                while True:
                    detail = await api.get(f"/api/operations/{op_id}")
                    if detail["operation"]["state"] == "finished":
                        break
                    assert time.monotonic() - start < 60
                    await asyncio.sleep(0.05)
                assert detail["progress"]["done"] == 1
                (result,) = detail["results"]["items"]
                assert result["repo_name"] == "github.test/acme/app"
                assert result["detail"] == "commit, then open pull request"
        finally:
            stop.set()
            await worker
    (pull,) = gh.repo("acme/app").pulls.values()
    assert pull.state is HostPullState.DRAFT
