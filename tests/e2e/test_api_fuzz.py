"""Property-based run of the live API on loopback (issue 7's fuzz run; issue 10, item 2):
schemathesis generates valid and invalid requests for every operation of /openapi.json, on a
store with data in it, with a write token. No 5xx, and every answer is documented (status,
content type, body schema). Bounded and derandomised to stay fast and repeatable;
``bench/api_fuzz.py`` runs longer, random ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from repo_updater.bootstrap import App, open_app
from repo_updater.config import parse_config
from repo_updater.core.domain import ChangesetSnapshot, HostPullState
from repo_updater.core.permissions import PermissionDiff
from repo_updater.store import changesets as cs_store
from repo_updater.store import repo_permissions as grant_store
from repo_updater.store.changeset_claims import (
    ClaimedChangeset,
    SyncOutcome,
    claim_work,
    complete_syncs,
)
from tests.support.api import api_client
from tests.support.api_fuzz import fuzz
from tests.support.fakes import T0, insert_repo
from tests.support.permissions import add_repo, grant

EXAMPLES = 12  # per operation and mode


@pytest.fixture
async def app(store_url: str) -> AsyncIterator[App]:
    config = parse_config({"database": store_url}, {})
    async with open_app(config, {}) as built:
        async with built.engine.begin() as conn:  # something for the reads to find
            bc = await cs_store.create_batch_change(conn, "seeded", "", T0)
            for i in range(1, 4):
                repo = await insert_repo(conn, f"acme/r{i}", archived=i == 3)
                await cs_store.track_changeset(conn, bc, repo, i, T0)
            claimed = await claim_work(conn, "seed", T0, timedelta(minutes=5), 10)
            await complete_syncs(conn, [synced(c) for c in claimed], T0)
            secret = await add_repo(conn, "acme/secret")  # private, a sync requested
            readers = [grant("Alice", "admin"), grant("bob"), grant("Ünïcode-ß")]
            await grant_store.write_diffs(conn, [(secret, PermissionDiff(granted=readers))], T0)
        yield built


def synced(claimed: ClaimedChangeset) -> SyncOutcome:
    snapshot = ChangesetSnapshot(claimed.changeset_id, claimed.number, HostPullState.OPEN)
    return SyncOutcome(claimed, snapshot)


async def test_the_api_answers_every_generated_request_as_documented(app: App) -> None:
    async with api_client(app) as client:
        document = await client.get("/openapi.json")
        result = await asyncio.to_thread(
            fuzz, str(client.client.base_url), document, client.token, max_examples=EXAMPLES
        )
    print(f"\napi fuzz ({app.engine.dialect.name}): {result.summary()}")
    assert result.requests >= result.operations * EXAMPLES
    assert result.server_errors == 0, result.failures
    assert result.failures == [], "\n".join(result.failures)
