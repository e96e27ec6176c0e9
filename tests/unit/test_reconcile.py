"""The planner (``core.reconcile``): properties over every state, operation and argument, and
the rules a user relies on, as examples."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repo_updater.core.domain import CheckState, ExternalState, HostKind, ReviewState
from repo_updater.core.operations import (
    InvalidOperation,
    MergeMethod,
    OperationArgs,
    OperationKind,
)
from repo_updater.core.reconcile import (
    ARCHIVED_REASON,
    CALL_ORDER,
    CallKind,
    ChangesetFacts,
    Plan,
    achieved,
    plan,
)

facts_strategy = st.builds(
    ChangesetFacts,
    host_kind=st.sampled_from(HostKind),
    external_state=st.none() | st.sampled_from(ExternalState),
    review_state=st.none() | st.sampled_from(ReviewState),
    check_state=st.none() | st.sampled_from(CheckState),
    title=st.sampled_from(["", "Bump", "Draft: Bump"]),
    repo_archived=st.booleans(),
    already_commented=st.booleans(),
)
args_strategy = st.builds(
    OperationArgs,
    merge_method=st.sampled_from(MergeMethod),
    force=st.booleans(),
    body=st.none() | st.sampled_from(["text", "LGTM"]),
    title=st.none() | st.sampled_from(["Bump", "New title"]),
)
kinds = st.sampled_from(OperationKind)

# What each call does to the changeset on the host (to check that plans converge).
_EFFECT = {
    CallKind.CLOSE: ExternalState.CLOSED,
    CallKind.REOPEN: ExternalState.OPEN,
    CallKind.MERGE: ExternalState.MERGED,
    CallKind.MARK_READY: ExternalState.OPEN,
    CallKind.CONVERT_TO_DRAFT: ExternalState.DRAFT,
}


def apply(facts: ChangesetFacts, p: Plan) -> ChangesetFacts:
    for call in p.calls:
        if call.kind in _EFFECT:
            facts = dataclasses.replace(facts, external_state=_EFFECT[call.kind])
        elif call.kind is CallKind.COMMENT:
            facts = dataclasses.replace(facts, already_commented=True)
        elif call.kind is CallKind.UPDATE and call.title is not None:
            facts = dataclasses.replace(facts, title=call.title)
    return facts


@given(facts_strategy, kinds, args_strategy)
def test_a_plan_is_calls_in_order_or_a_reason(
    facts: ChangesetFacts, kind: OperationKind, args: OperationArgs
) -> None:
    p = plan(facts, kind, args)
    assert (p.skip is None) == bool(p.calls)
    assert p.skip is None or p.skip.strip()
    ranks = [CALL_ORDER[c.kind] for c in p.calls]
    assert ranks == sorted(ranks)


@given(facts_strategy, kinds, args_strategy)
def test_nothing_is_written_to_an_archived_deleted_or_unsynced_changeset(
    facts: ChangesetFacts, kind: OperationKind, args: OperationArgs
) -> None:
    if facts.repo_archived or facts.external_state in (
        ExternalState.READONLY,
        ExternalState.DELETED,
        None,
    ):
        assert plan(facts, kind, args).calls == ()
    if facts.repo_archived and facts.external_state is not None:
        assert plan(facts, kind, args).skip == ARCHIVED_REASON


@given(facts_strategy, args_strategy)
def test_a_merged_changeset_is_never_closed_reopened_or_merged(
    facts: ChangesetFacts, args: OperationArgs
) -> None:
    merged = dataclasses.replace(facts, external_state=ExternalState.MERGED)
    for kind in (OperationKind.CLOSE, OperationKind.REOPEN, OperationKind.MERGE):
        assert plan(merged, kind, args).calls == ()


@given(facts_strategy, args_strategy)
def test_merge_without_force_needs_passed_checks_and_approval(
    facts: ChangesetFacts, args: OperationArgs
) -> None:
    p = plan(facts, OperationKind.MERGE, dataclasses.replace(args, force=False))
    if any(c.kind is CallKind.MERGE for c in p.calls):
        assert facts.check_state is CheckState.PASSED
        assert facts.review_state is ReviewState.APPROVED
        assert facts.external_state is ExternalState.OPEN


@given(facts_strategy, kinds, args_strategy)
def test_plans_converge_after_their_calls_are_done(
    facts: ChangesetFacts, kind: OperationKind, args: OperationArgs
) -> None:
    """Doing a plan's calls leaves nothing to do: planning again skips, and the outcome
    counts as achieved (what an interrupted attempt is checked against)."""
    p = plan(facts, kind, args)
    if not p.calls or (kind is OperationKind.UPDATE and args.body is not None):
        return  # nothing done; an update of the body is re-sent (idempotent)
    after = apply(facts, p)
    assert plan(after, kind, args).calls == ()
    assert achieved(after, kind, args)


def open_pr(**changes: object) -> ChangesetFacts:
    base = ChangesetFacts(
        host_kind=HostKind.GITHUB,
        external_state=ExternalState.OPEN,
        review_state=ReviewState.APPROVED,
        check_state=CheckState.PASSED,
        title="Bump",
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_examples_a_user_relies_on() -> None:
    close, merge = OperationKind.CLOSE, OperationKind.MERGE
    default = OperationArgs()
    assert plan(open_pr(), close, default).describe() == "close"
    assert plan(open_pr(external_state=ExternalState.MERGED), close, default).skip == (
        "already merged: a merged changeset is not closed"
    )
    assert plan(open_pr(external_state=ExternalState.READONLY), close, default).skip == (
        ARCHIVED_REASON
    )
    refused = plan(open_pr(check_state=CheckState.FAILED), merge, default)
    assert refused.skip == ("not mergeable: checks not passed (FAILED) (--force merges anyway)")
    forced = plan(
        open_pr(external_state=ExternalState.DRAFT, check_state=CheckState.FAILED),
        merge,
        OperationArgs(force=True, merge_method=MergeMethod.SQUASH),
    )
    assert forced.describe() == "mark ready, then merge (squash)"
    gitlab_rebase = plan(
        open_pr(host_kind=HostKind.GITLAB), merge, OperationArgs(merge_method=MergeMethod.REBASE)
    )
    assert gitlab_rebase.calls == () and "GitLab" in (gitlab_rebase.skip or "")
    assert plan(open_pr(already_commented=True), OperationKind.COMMENT,
                OperationArgs(body="hi")).calls == ()  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        (OperationKind.COMMENT, OperationArgs(), "non-empty body"),
        (OperationKind.UPDATE, OperationArgs(), "new title, a new body"),
        (OperationKind.UPDATE, OperationArgs(title=" "), "must not be empty"),
        (OperationKind.CLOSE, OperationArgs(merge_method=MergeMethod.SQUASH), "only applies"),
        (OperationKind.COMMENT, OperationArgs(body="x" * 70_000), "at most 65536"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(
    kind: OperationKind, args: OperationArgs, message: str
) -> None:
    with pytest.raises(InvalidOperation, match=message):
        args.validate(kind)


def test_arguments_round_trip_and_unknown_ones_are_refused() -> None:
    args = OperationArgs(merge_method=MergeMethod.REBASE, force=True, body="b", title="t")
    assert OperationArgs.from_json(args.to_json()) == args
    with pytest.raises(InvalidOperation, match="unknown argument"):
        OperationArgs.from_json({"method": "squash"})
    with pytest.raises(InvalidOperation, match="merge_method"):
        OperationArgs.from_json({"merge_method": "octopus"})
