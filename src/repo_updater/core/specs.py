"""Batch specs as plain values, and what one spec does to one repository. Pure: no I/O.

A spec (``repo_updater.batch_spec`` parses and validates the YAML) says which repositories it
is ``on``, which ``changes`` to make to their files, and the ``changeset`` to open with them.
For one repository, given the files it has now, ``decide`` says what the changeset's branch
should hold (the changed files, and a digest of them to compare with what was applied last
time), or why the repository is skipped. ``unified_diff`` shows it for a preview.
"""

from __future__ import annotations

import difflib
import enum
import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class Published(enum.StrEnum):
    """``changeset.published``: ``true`` (ready for review), ``draft``, or ``false`` (push the
    branch only, open no pull request)."""

    TRUE = "true"
    DRAFT = "draft"
    FALSE = "false"


class OnRemoved(enum.StrEnum):
    """What becomes of the changeset of a repository the spec no longer matches."""

    CLOSE = "close"
    DETACH = "detach"  # left open on the host, no longer tracked by the batch change


@dataclass(frozen=True, slots=True)
class Write:
    content: str


@dataclass(frozen=True, slots=True)
class Replace:
    pattern: str  # a Python regular expression (validated when the spec is parsed)
    replacement: str


@dataclass(frozen=True, slots=True)
class Delete:
    pass


FileChange = Write | Replace | Delete


@dataclass(frozen=True, slots=True)
class On:
    repos: tuple[str, ...]  # name globs (fnmatch), against the store's repo names
    exclude: tuple[str, ...] = ()
    skip_archived: bool = True
    skip_forks: bool = False


@dataclass(frozen=True, slots=True)
class ChangesetTemplate:
    title: str
    branch: str
    commit_message: str
    body: str = ""
    published: Published = Published.TRUE


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    on: On
    changes: tuple[tuple[str, FileChange], ...]  # (path, change), in the spec's order
    changeset: ChangesetTemplate
    description: str = ""
    on_removed: OnRemoved = OnRemoved.CLOSE

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(path for path, _ in self.changes)


# --- which repositories ------------------------------------------------------------------------


def matches(spec: Spec, repo_name: str) -> bool:
    """Whether the spec's ``on.repos`` globs select the repo and no ``on.exclude`` glob does
    (globs compare ignoring case, as repo names do)."""
    name = repo_name.lower()
    if not any(fnmatch.fnmatchcase(name, g.lower()) for g in spec.on.repos):
        return False
    return not any(fnmatch.fnmatchcase(name, g.lower()) for g in spec.on.exclude)


SKIP_ARCHIVED = "archived"
SKIP_FORK = "fork"
SKIP_NO_FILE = "no file matches"
SKIP_UNCHANGED = "nothing changes"


def skip_by_flags(spec: Spec, *, archived: bool, fork: bool) -> str | None:
    """The reason a matched repo is skipped before its files are read, or None."""
    if archived and spec.on.skip_archived:
        return SKIP_ARCHIVED
    if fork and spec.on.skip_forks:
        return SKIP_FORK
    return None


# --- what changes --------------------------------------------------------------------------------

Files = Mapping[str, str | None]  # path -> content (None: the file does not exist)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the spec does to one repository: the files to commit (path -> new content, None
    to delete) and their digest, or the reason there is nothing to commit."""

    files: Mapping[str, str | None]
    digest: str = ""
    skip: str | None = None


def change_file(change: FileChange, current: str | None) -> str | None:
    """The file's content after ``change`` (None: absent). A replace or delete of an absent
    file leaves it absent."""
    if isinstance(change, Write):
        return change.content
    if isinstance(change, Delete) or current is None:
        return None
    return re.sub(change.pattern, change.replacement, current)


def decide(spec: Spec, current: Files) -> Outcome:
    """The files ``spec`` changes in a repository whose files (at ``spec.paths``) are
    ``current``: ``SKIP_NO_FILE`` when only replaces and deletes are asked and none of their
    files exists, ``SKIP_UNCHANGED`` when no content changes."""
    writes = any(isinstance(c, Write) for _, c in spec.changes)
    if not writes and all(current.get(path) is None for path in spec.paths):
        return Outcome(files={}, skip=SKIP_NO_FILE)
    after: dict[str, str | None] = {}
    for path, change in spec.changes:
        before = after[path] if path in after else current.get(path)
        after[path] = change_file(change, before)
    changed = {p: c for p, c in after.items() if c != current.get(p)}
    if not changed:
        return Outcome(files={}, skip=SKIP_UNCHANGED)
    return Outcome(files=changed, digest=content_digest(spec, changed))


def content_digest(spec: Spec, files: Files) -> str:
    """What identifies the commit the branch should hold: the changed files, the branch and
    the commit message. Equal digests: the branch needs no new commit."""
    body = json.dumps(
        {
            "files": sorted(files.items()),
            "branch": spec.changeset.branch,
            "message": spec.changeset.commit_message,
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def unified_diff(current: Files, changed: Files) -> str:
    """A unified diff (``git diff`` style) from ``current`` to ``changed``."""
    parts: list[str] = []
    for path in sorted(changed):
        before, after = current.get(path), changed[path]
        old = [] if before is None else before.splitlines(keepends=True)
        new = [] if after is None else after.splitlines(keepends=True)
        lines = difflib.unified_diff(
            old,
            new,
            fromfile="/dev/null" if before is None else f"a/{path}",
            tofile="/dev/null" if after is None else f"b/{path}",
        )
        parts.extend(line if line.endswith("\n") else line + "\n" for line in lines)
    return "".join(parts)


# --- what the changeset needs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    """What the last apply put on the host for one repository (from the store)."""

    digest: str | None = None  # of the commit on the branch; None: no commit yet
    number: int | None = None  # the pull request; None: none opened
    title: str = ""
    body: str = ""
    draft: bool = False
    open: bool = True  # the pull request is open or draft (not closed or merged)


@dataclass(frozen=True, slots=True)
class Steps:
    """The writes one repository needs, in this order."""

    commit: bool = False  # create a commit and point the branch at it (force)
    open_pull: bool = False
    update_pull: bool = False  # title and/or body
    mark_ready: bool = False

    @property
    def any(self) -> bool:
        return self.commit or self.open_pull or self.update_pull or self.mark_ready

    def describe(self) -> str:
        names = [
            ("commit", self.commit),
            ("open pull request", self.open_pull),
            ("update pull request", self.update_pull),
            ("mark ready", self.mark_ready),
        ]
        return ", then ".join(name for name, wanted in names if wanted) or "nothing to do"


def steps(spec: Spec, outcome: Outcome, applied: Applied) -> Steps:
    """The writes that bring one repository from ``applied`` to what ``spec`` wants."""
    commit = outcome.skip is None and outcome.digest != applied.digest
    if spec.changeset.published is Published.FALSE:
        return Steps(commit=commit)
    if applied.number is None:
        # A branch is needed to open a pull request from: one this apply commits, or one an
        # earlier apply made.
        has_branch = commit or applied.digest is not None
        return Steps(commit=commit, open_pull=has_branch)
    template = spec.changeset
    update = applied.open and (template.title, template.body) != (applied.title, applied.body)
    ready = applied.open and applied.draft and template.published is Published.TRUE
    return Steps(commit=commit, update_pull=update, mark_ready=ready)


def select(spec: Spec, names: Sequence[str]) -> list[str]:
    """The names the spec is ``on``, in the order given."""
    return [n for n in names if matches(spec, n)]
