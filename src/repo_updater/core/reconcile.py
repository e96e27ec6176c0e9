"""The planner: what host calls one changeset needs for one wanted operation, or why none.
Pure: it decides from the facts it is given (the stored changeset and repo state, or fresher
ones the executor loaded from the host), and the executor carries the calls out.

Rules, in the order they are checked (after Sourcegraph's ``DeterminePlan``, see
docs/architecture.md):

1. a changeset never synced has no known state: skipped ("not synced yet");
2. an archived repository is read-only (its open or draft changesets are READONLY): nothing is
   written to it;
3. a changeset deleted on the host: skipped;
4. per operation: a MERGED changeset is not closed, reopened, updated or merged again; a
   CLOSED one is only reopened, commented on or updated; a merge needs passed checks and an
   approving review unless forced (a forced merge of a draft marks it ready first).

Calls are ordered by ``CALL_ORDER`` (reopen, then undraft, then update, then merge or close),
so a plan never depends on how it was put together.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from repo_updater.core.domain import CheckState, ExternalState, HostKind, ReviewState
from repo_updater.core.operations import MergeMethod, OperationArgs, OperationKind


class CallKind(enum.StrEnum):
    REOPEN = "reopen"
    MARK_READY = "mark_ready"
    CONVERT_TO_DRAFT = "convert_to_draft"
    UPDATE = "update"
    MERGE = "merge"
    CLOSE = "close"
    COMMENT = "comment"


# Lower runs first (Sourcegraph: reopen 2 < undraft 3 < update 4).
CALL_ORDER: dict[CallKind, int] = {kind: rank for rank, kind in enumerate(CallKind)}

# Calls whose repetition would be visible (a second comment, or a merge attempt after the
# first went through): before repeating one that may have reached the host, look first.
NOT_IDEMPOTENT = frozenset({CallKind.COMMENT, CallKind.MERGE})


@dataclass(frozen=True, slots=True)
class HostCall:
    kind: CallKind
    merge_method: MergeMethod | None = None  # MERGE
    title: str | None = None  # UPDATE
    body: str | None = None  # COMMENT (the text), UPDATE (the description)

    def describe(self) -> str:
        if self.kind is CallKind.MERGE and self.merge_method is not None:
            return f"merge ({self.merge_method.value})"
        return self.kind.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class ChangesetFacts:
    """What the planner knows about one changeset."""

    host_kind: HostKind
    external_state: ExternalState | None  # None: never synced
    review_state: ReviewState | None = None
    check_state: CheckState | None = None
    title: str = ""
    repo_archived: bool = False
    # The comment this operation wants is on the host already (found when an interrupted
    # attempt is looked at again): posting it again would duplicate it.
    already_commented: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """Host calls in order, or the reason there are none (``skip``)."""

    calls: tuple[HostCall, ...] = ()
    skip: str | None = None

    def __post_init__(self) -> None:
        if bool(self.calls) == (self.skip is not None):
            raise ValueError("a plan has calls or a skip reason, not both or neither")
        ranks = [CALL_ORDER[c.kind] for c in self.calls]
        if ranks != sorted(ranks):
            raise ValueError("calls out of order")

    @classmethod
    def skipped(cls, reason: str) -> Plan:
        return cls(skip=reason)

    @classmethod
    def of(cls, *calls: HostCall) -> Plan:
        return cls(calls=tuple(sorted(calls, key=lambda c: CALL_ORDER[c.kind])))

    def describe(self) -> str:
        if self.skip is not None:
            return f"skip: {self.skip}"
        return ", then ".join(c.describe() for c in self.calls)


ARCHIVED_REASON = "repository archived (read-only)"
_OPEN = (ExternalState.OPEN, ExternalState.DRAFT)


def plan(facts: ChangesetFacts, kind: OperationKind, args: OperationArgs) -> Plan:
    """The host calls that make ``kind`` happen to the changeset, or a skip with its reason."""
    state = facts.external_state
    if state is None:
        return Plan.skipped("not synced yet: its state on the host is unknown")
    if facts.repo_archived or state is ExternalState.READONLY:
        return Plan.skipped(ARCHIVED_REASON)
    if state is ExternalState.DELETED:
        return Plan.skipped("deleted on the host")
    return _PLANNERS[kind](facts, args)


def _close(facts: ChangesetFacts, _args: OperationArgs) -> Plan:
    if facts.external_state is ExternalState.MERGED:
        return Plan.skipped("already merged: a merged changeset is not closed")
    if facts.external_state is ExternalState.CLOSED:
        return Plan.skipped("already closed")
    return Plan.of(HostCall(CallKind.CLOSE))


def _reopen(facts: ChangesetFacts, _args: OperationArgs) -> Plan:
    if facts.external_state is ExternalState.MERGED:
        return Plan.skipped("merged: a merged changeset cannot be reopened")
    if facts.external_state in _OPEN:
        return Plan.skipped("already open")
    return Plan.of(HostCall(CallKind.REOPEN))


def _merge(facts: ChangesetFacts, args: OperationArgs) -> Plan:
    state = facts.external_state
    if state is ExternalState.MERGED:
        return Plan.skipped("already merged")
    if state is ExternalState.CLOSED:
        return Plan.skipped("closed: reopen it before merging")
    if facts.host_kind is HostKind.GITLAB and args.merge_method is MergeMethod.REBASE:
        return Plan.skipped(
            "GitLab chooses merge commit or fast-forward per project, not per merge request: "
            "use merge or squash"
        )
    merge = HostCall(CallKind.MERGE, merge_method=args.merge_method)
    if args.force:
        if state is ExternalState.DRAFT:
            return Plan.of(HostCall(CallKind.MARK_READY), merge)
        return Plan.of(merge)
    missing = []
    if state is ExternalState.DRAFT:
        missing.append("it is a draft")
    if facts.check_state is not CheckState.PASSED:
        missing.append(f"checks not passed ({_name(facts.check_state)})")
    if facts.review_state is not ReviewState.APPROVED:
        missing.append(f"review not approved ({_name(facts.review_state)})")
    if missing:
        return Plan.skipped("not mergeable: " + "; ".join(missing) + " (--force merges anyway)")
    return Plan.of(merge)


def _comment(facts: ChangesetFacts, args: OperationArgs) -> Plan:
    if facts.already_commented:
        return Plan.skipped("the comment is on the host already")
    return Plan.of(HostCall(CallKind.COMMENT, body=args.body))


def _ready(facts: ChangesetFacts, _args: OperationArgs) -> Plan:
    state = facts.external_state
    if state is ExternalState.OPEN:
        return Plan.skipped("already ready for review")
    if state is not ExternalState.DRAFT:
        return Plan.skipped(f"{_name(state).lower()}: only an open draft can be marked ready")
    return Plan.of(HostCall(CallKind.MARK_READY))


def _draft(facts: ChangesetFacts, _args: OperationArgs) -> Plan:
    state = facts.external_state
    if state is ExternalState.DRAFT:
        return Plan.skipped("already a draft")
    if state is not ExternalState.OPEN:
        return Plan.skipped(f"{_name(state).lower()}: only an open changeset becomes a draft")
    return Plan.of(HostCall(CallKind.CONVERT_TO_DRAFT))


def _update(facts: ChangesetFacts, args: OperationArgs) -> Plan:
    if facts.external_state is ExternalState.MERGED:
        return Plan.skipped("merged: its title and description are final")
    if args.body is None and args.title is None:
        return Plan.skipped("nothing to change")
    if args.body is None and args.title == facts.title:
        return Plan.skipped("the title is unchanged")
    return Plan.of(HostCall(CallKind.UPDATE, title=args.title, body=args.body))


def _apply_spec(_facts: ChangesetFacts, _args: OperationArgs) -> Plan:
    # An apply_spec result is one repository, planned by ``core.specs.steps`` (it may have no
    # changeset yet), never per changeset here.
    return Plan.skipped("apply_spec is planned per repository (core.specs)")


def _name(value: enum.Enum | None) -> str:
    return "unknown" if value is None else str(value.value)


_PLANNERS = {
    OperationKind.CLOSE: _close,
    OperationKind.REOPEN: _reopen,
    OperationKind.MERGE: _merge,
    OperationKind.COMMENT: _comment,
    OperationKind.READY: _ready,
    OperationKind.DRAFT: _draft,
    OperationKind.UPDATE: _update,
    OperationKind.APPLY_SPEC: _apply_spec,
}


def achieved(facts: ChangesetFacts, kind: OperationKind, args: OperationArgs) -> bool:
    """Whether the changeset already is what ``kind`` wants. Asked after an attempt that may
    have reached the host was interrupted: if so, the attempt went through and counts as done
    (a repeated comment or merge would be a second one)."""
    state = facts.external_state
    if kind is OperationKind.COMMENT:
        return facts.already_commented
    if kind is OperationKind.UPDATE:
        return args.body is None and args.title in (None, facts.title)
    if kind is OperationKind.APPLY_SPEC:
        return False
    wanted = {
        OperationKind.CLOSE: (ExternalState.CLOSED,),
        OperationKind.REOPEN: _OPEN,
        OperationKind.MERGE: (ExternalState.MERGED,),
        OperationKind.READY: (ExternalState.OPEN,),
        OperationKind.DRAFT: (ExternalState.DRAFT,),
    }[kind]
    return state in wanted
