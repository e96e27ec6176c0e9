"""Bitbucket Server's recorded answers (fixtures/bitbucket, shaped as Atlassian's REST
documentation shows them) replayed through ``BitbucketServerSource``."""

from __future__ import annotations

import pytest

from repo_updater.core.domain import ChangesetRef, CheckState, HostPullState, ReviewState
from repo_updater.core.errors import NotFound
from repo_updater.core.selection import Selection
from repo_updater.sources.bitbucket import BitbucketServerSource
from repo_updater.sources.http import RetryPolicy
from tests.conformance.replay import Replay

RETRY = RetryPolicy(attempts=1, backoff=0.0, max_rate_limit_wait=0.0)


def source(replay: Replay, selection: Selection | None = None) -> BitbucketServerSource:
    return BitbucketServerSource(
        base_url=replay.base_url,
        token="bb-t0ken",
        selection=selection or Selection(),
        transport=replay.transport,
        retry=RETRY,
    )


async def test_empty_project_lists_nothing_unknown_project_is_not_found() -> None:
    replay = Replay.load("bitbucket/project_empty")
    src = source(replay, Selection(owners=("EMPTY",)))
    assert [r async for page in src.list_repos() for r in page] == []
    await src.aclose()
    src = source(replay, Selection(owners=("NOPE",)))
    with pytest.raises(NotFound, match="does not exist"):
        [r async for page in src.list_repos() for r in page]
    await src.aclose()
    replay.assert_all_used()


async def test_check_state_from_the_build_status_api() -> None:
    """Before: always UNKNOWN. After: the head commit's build statuses."""
    replay = Replay.load("bitbucket/pull_requests_builds")
    src = source(replay)
    snaps = await src.load_changesets([ChangesetRef(n, "ACME/app", "5", n) for n in (3, 2, 1)])
    await src.aclose()
    replay.assert_all_used()  # no build-status request for the merged one
    assert [(s.state, s.check_state) for s in snaps] == [
        (HostPullState.OPEN, CheckState.FAILED),  # FAILED + SUCCESSFUL
        (HostPullState.OPEN, CheckState.PENDING),  # INPROGRESS
        (HostPullState.MERGED, CheckState.UNKNOWN),
    ]
    assert snaps[0].review_state is ReviewState.APPROVED
