"""Bulk operations on changesets, as plain values: what a user asks for (``OperationKind`` and
``OperationArgs``), what becomes of each changeset (``ResultState``), and the progress and
expected finish of an operation. Pure: no I/O, ``now`` is always a parameter.

A bulk operation is one request ("close these 1,000 changesets") stored as a row, with one
result row per changeset; the planner (``core.reconcile``) turns each into host calls.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# GitHub's limits, the strictest of the four hosts: a pull request title holds 256 characters,
# a comment or body 65,536 (GitLab allows 1,000,000; we keep one rule for every host).
MAX_TITLE = 256
MAX_BODY = 65_536


class OperationKind(enum.StrEnum):
    """What a bulk operation does to each of its changesets. ``apply_spec`` opens, updates
    or closes changesets from a batch spec (one result per repository, see ``core.specs``),
    run by the same machinery."""

    CLOSE = "close"
    REOPEN = "reopen"
    MERGE = "merge"
    COMMENT = "comment"
    READY = "ready"  # mark ready for review (undraft)
    DRAFT = "draft"  # convert to draft
    UPDATE = "update"  # change title and/or body
    APPLY_SPEC = "apply_spec"  # the batch spec ``spec_id`` (results per repository)


class MergeMethod(enum.StrEnum):
    MERGE = "merge"
    SQUASH = "squash"
    REBASE = "rebase"


class ResultState(enum.StrEnum):
    """One changeset's outcome in one operation. Only PENDING changes; the rest are final."""

    PENDING = "pending"
    DONE = "done"
    SKIPPED = "skipped"  # nothing to do, or not allowed: the reason says which
    FAILED = "failed"  # the host said no, or transient errors outlasted the retries


class OperationState(enum.StrEnum):
    RUNNING = "running"  # some results are pending
    FINISHED = "finished"  # every result is final


FINAL_RESULT_STATES = frozenset({ResultState.DONE, ResultState.SKIPPED, ResultState.FAILED})


class InvalidOperation(ValueError):
    """The operation's arguments do not fit its kind (a comment without text, ...)."""


@dataclass(frozen=True, slots=True)
class OperationArgs:
    """The arguments of an operation. ``force`` lets a merge through without passed checks
    and an approving review (and undrafts a draft first)."""

    merge_method: MergeMethod = MergeMethod.MERGE
    force: bool = False
    body: str | None = None  # COMMENT: the text; UPDATE: the new description
    title: str | None = None  # UPDATE: the new title
    spec_id: int | None = None  # APPLY_SPEC: the stored spec (batch_specs.id)

    def validate(self, kind: OperationKind) -> OperationArgs:
        """Return self if the arguments fit ``kind``; raise ``InvalidOperation`` otherwise."""
        for what, value, limit in (("title", self.title, MAX_TITLE), ("body", self.body, MAX_BODY)):
            if value is not None and (len(value) > limit or "\x00" in value):
                raise InvalidOperation(f"{what} must be at most {limit} characters, without NUL")
        if kind is OperationKind.COMMENT and not (self.body or "").strip():
            raise InvalidOperation("a comment needs a non-empty body")
        if kind is OperationKind.UPDATE:
            if self.title is None and self.body is None:
                raise InvalidOperation("an update needs a new title, a new body, or both")
            if self.title is not None and not self.title.strip():
                raise InvalidOperation("the new title must not be empty")
        if (kind is OperationKind.APPLY_SPEC) != (self.spec_id is not None):
            raise InvalidOperation("a spec id goes with apply_spec, and only with it")
        if kind is not OperationKind.MERGE and self.merge_method is not MergeMethod.MERGE:
            raise InvalidOperation("a merge method only applies to merge")
        return self

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"merge_method": self.merge_method.value, "force": self.force}
        if self.body is not None:
            out["body"] = self.body
        if self.title is not None:
            out["title"] = self.title
        if self.spec_id is not None:
            out["spec_id"] = self.spec_id
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OperationArgs:
        """Parse stored or user-given arguments; raise ``InvalidOperation`` on bad input."""
        unknown = set(data) - {"merge_method", "force", "body", "title", "spec_id"}
        if unknown:
            raise InvalidOperation(f"unknown argument(s): {', '.join(sorted(unknown))}")
        method = data.get("merge_method", MergeMethod.MERGE.value)
        if method not in MergeMethod.__members__.values():
            methods = ", ".join(m.value for m in MergeMethod)
            raise InvalidOperation(f"merge_method must be one of {methods}")
        force = data.get("force", False)
        if not isinstance(force, bool):
            raise InvalidOperation("force must be true or false")
        body, title = data.get("body"), data.get("title")
        if not isinstance(body, str | None) or not isinstance(title, str | None):
            raise InvalidOperation("body and title must be strings")
        spec_id = data.get("spec_id")
        if spec_id is not None and (not isinstance(spec_id, int) or isinstance(spec_id, bool)):
            raise InvalidOperation("spec_id must be an integer")
        return cls(
            merge_method=MergeMethod(method), force=force, body=body, title=title, spec_id=spec_id
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far an operation is, and when it is expected to finish."""

    total: int
    pending: int
    done: int
    skipped: int
    failed: int
    expected_finish: datetime | None  # None: finished, or nothing to estimate from yet

    @property
    def finished(self) -> int:
        return self.total - self.pending

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.finished / self.total


def expected_finish(
    now: datetime,
    *,
    started_at: datetime | None,
    finished: int,
    pending: int,
    paced_seconds: float | None = None,
) -> datetime | None:
    """When the ``pending`` results are expected to be final: at the pace observed since
    ``started_at`` (the first attempt), but no sooner than the hosts' write budgets allow
    (``paced_seconds``, see ``core.pacing.seconds_for``). None when nothing is pending or
    there is nothing to estimate from yet."""
    if pending <= 0:
        return None
    durations = []
    if started_at is not None and finished > 0 and now > started_at:
        durations.append((now - started_at).total_seconds() * pending / finished)
    if paced_seconds is not None:
        durations.append(paced_seconds)
    if not durations:
        return None
    return now + timedelta(seconds=max(durations))
