"""The repo diff: pure functions that compare what a code host lists with what is stored.

A listing is processed page by page (memory stays flat in the size of the listing). For each
page the syncer calls :func:`dedupe_page` (drop repeats within the page), then
:func:`diff_page` against the stored rows it looked up for that page, which also drops repeats
of repos earlier pages yielded (:class:`SeenIds`).
Removals are only known at the end of a *complete* listing: :func:`removed_ids`.
:func:`page_events` says what a written page did, as outbox events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from repo_updater.core.domain import RepoEvent, RepoEventKind, SourcedRepo
from repo_updater.core.selection import store_name


class StoredRepo(NamedTuple):
    """The stored fields the diff compares (a slice of ``repos``).

    A named tuple rather than a frozen dataclass: one is built for every stored row a sync
    reads (100,000 per cold re-sync of 100,000 repos), straight from the row (``_make``), about
    seven times faster than a frozen dataclass's ``__init__``; it is just as immutable."""

    id: int
    name: str
    external_id: str
    external_name: str
    url: str
    archived: bool
    fork: bool
    private: bool
    description: str
    deleted: bool
    linked: bool  # linked to the service being synced


@dataclass(frozen=True, slots=True)
class Change:
    """A sourced repo that differs from its stored row; ``fields`` names what changed."""

    stored: StoredRepo
    sourced: SourcedRepo
    new_name: str
    fields: frozenset[str]


@dataclass(slots=True)
class PageDiff:
    added: list[tuple[SourcedRepo, str]] = field(default_factory=list)  # (repo, store name)
    revived: list[Change] = field(default_factory=list)  # stored but deleted: back again
    modified: list[Change] = field(default_factory=list)
    unmodified: list[StoredRepo] = field(default_factory=list)
    archived: list[Change] = field(default_factory=list)  # archived flag flipped to True
    unarchived: list[Change] = field(default_factory=list)  # flipped to False
    renamed: list[Change] = field(default_factory=list)
    to_link: list[StoredRepo] = field(default_factory=list)  # stored, not yet linked here
    duplicates: int = 0  # repeats of repos an earlier page of the listing yielded

    @property
    def writes_nothing(self) -> bool:
        return not (self.added or self.revived or self.modified or self.to_link)

    def drop_claims(self, names: set[str]) -> int:
        """Drop the repos that claim one of ``names`` (repeats of repos seen earlier in the
        listing under that name); returns how many were dropped."""
        if not names:
            return 0

        def keep(c: Change) -> bool:
            return c.new_name not in names or c.stored.name == c.new_name

        before = len(self.added) + len(self.revived) + len(self.modified)
        self.added = [(r, n) for r, n in self.added if n not in names]
        self.revived = [c for c in self.revived if keep(c)]
        self.modified = [c for c in self.modified if keep(c)]
        self.renamed = [c for c in self.renamed if keep(c)]
        self.archived = [c for c in self.archived if keep(c)]
        self.unarchived = [c for c in self.unarchived if keep(c)]
        return before - len(self.added) - len(self.revived) - len(self.modified)

    def claims(self) -> dict[str, str]:
        """Store names this page will (re)occupy, each with the external id of the repo that
        claims it: conflicts must be resolved for them before writing."""
        out = {name: repo.external_id for repo, name in self.added}
        out.update({c.new_name: c.sourced.external_id for c in self.revived + self.renamed})
        return out


class SeenIds:
    """The stored repo ids a listing has yielded so far, as a bitmap.

    Repo ids are dense integers, so 100,000 repos cost about 12 KB: memory stays flat in the
    size of the listing. It answers two questions: which linked repos went unseen (removals),
    and whether a repo on a later page is a repeat of one already seen (de-duplication across
    pages: a repeated external id maps to the same stored id; a repeated name finds the seen
    repo as the holder of that name).
    """

    __slots__ = ("_bits", "count")

    def __init__(self) -> None:
        self._bits = bytearray()
        self.count = 0

    def add(self, repo_id: int) -> None:
        byte, bit = divmod(repo_id, 8)
        if byte >= len(self._bits):
            self._bits.extend(bytes(max(byte + 1 - len(self._bits), len(self._bits))))
        if not self._bits[byte] & (1 << bit):
            self._bits[byte] |= 1 << bit
            self.count += 1

    def update(self, repo_ids: Iterable[int]) -> None:
        for repo_id in repo_ids:
            self.add(repo_id)

    def bitmap(self) -> bytes:
        """The set as bytes: bit ``i % 8`` (least significant first) of byte ``i // 8`` is
        repo id ``i`` (PostgreSQL's ``get_bit`` numbering), for a store to test ids itself."""
        return bytes(self._bits)

    def __contains__(self, repo_id: object) -> bool:
        if not isinstance(repo_id, int) or repo_id < 0:
            return False
        byte, bit = divmod(repo_id, 8)
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << bit))


def dedupe_page(page: Iterable[SourcedRepo]) -> tuple[list[SourcedRepo], int]:
    """Within one page, keep the first occurrence by external id, then by (case-insensitive)
    name. Repeats across pages are caught by :func:`diff_page` and :func:`name_conflicts`
    through :class:`SeenIds`. Returns the kept repos and how many were dropped."""
    ids: set[str] = set()
    names: set[str] = set()
    kept: list[SourcedRepo] = []
    dropped = 0
    for repo in page:
        lowered = repo.name.lower()
        if repo.external_id in ids or lowered in names:
            dropped += 1
            continue
        ids.add(repo.external_id)
        names.add(lowered)
        kept.append(repo)
    return kept, dropped


_NOTHING_CHANGED: frozenset[str] = frozenset()


def changed_fields(stored: StoredRepo, sourced: SourcedRepo, new_name: str) -> frozenset[str]:
    # Most repos of most pages are unchanged: one tuple comparison says so.
    if (
        stored.name, stored.external_name, stored.url, stored.archived, stored.fork,
        stored.private, stored.description,
    ) == (
        new_name, sourced.name, sourced.url, sourced.archived, sourced.fork,
        sourced.private, sourced.description,
    ):  # fmt: skip
        return _NOTHING_CHANGED
    out: set[str] = set()
    if stored.name != new_name or stored.external_name != sourced.name:
        out.add("name")
    if stored.url != sourced.url:
        out.add("url")
    if stored.archived != sourced.archived:
        out.add("archived")
    if stored.fork != sourced.fork:
        out.add("fork")
    if stored.private != sourced.private:
        out.add("private")
    if stored.description != sourced.description:
        out.add("description")
    return frozenset(out)


def diff_page(
    page: Sequence[SourcedRepo],
    stored_by_external_id: Mapping[str, StoredRepo],
    name_prefix: str,
    seen: SeenIds | None = None,
) -> PageDiff:
    """Classify one de-duplicated page against the stored rows with the same external ids.
    A repo whose stored row this listing already yielded (``seen``) is a repeat: dropped."""
    diff = PageDiff()
    for repo in page:
        name = store_name(name_prefix, repo.name)
        stored = stored_by_external_id.get(repo.external_id)
        if stored is not None and seen is not None and stored.id in seen:
            diff.duplicates += 1
            continue
        if stored is None:
            diff.added.append((repo, name))
            continue
        fields = changed_fields(stored, repo, name)
        if not fields and not stored.deleted:  # the common case: no Change to build
            diff.unmodified.append(stored)
            if not stored.linked:
                diff.to_link.append(stored)
            continue
        change = Change(stored=stored, sourced=repo, new_name=name, fields=fields)
        if stored.deleted:
            diff.revived.append(change)
        elif fields:
            diff.modified.append(change)
        else:
            diff.unmodified.append(stored)
        if not stored.linked and not stored.deleted:
            diff.to_link.append(stored)
        # A revived repo carries its flips too: it may come back archived (or unarchived, or
        # renamed) after it left the listing, and its changesets must follow at once.
        if "archived" in fields:
            (diff.archived if repo.archived else diff.unarchived).append(change)
        if "name" in fields and stored.name != name:
            diff.renamed.append(change)
    return diff


def removed_ids(linked_ids: Iterable[int], seen_ids: SeenIds | set[int]) -> list[int]:
    """Repos linked to the service that a complete listing did not yield."""
    return sorted(i for i in linked_ids if i not in seen_ids)


def name_conflicts(
    claimed: Mapping[str, str],
    live_by_name: Mapping[str, tuple[int, str]],
    moving: frozenset[int] = frozenset(),
    seen: SeenIds | None = None,
) -> tuple[list[int], set[str]]:
    """Resolve names a page claims that live stored repos hold.

    ``claimed`` maps store name -> external id of the sourced repo claiming it;
    ``live_by_name`` maps lower-cased store name -> (repo id, external id) of the live row
    holding it (names are unique ignoring case).
    A row holding its own name is no conflict, nor is one that this page renames away
    (``moving``). If the holder was yielded earlier in this listing (``seen``), the claimant
    is a repeat of it by name: its name is returned as a duplicate. Otherwise the code host is
    the truth: the old holder was renamed or deleted there, so it makes way (its id returned).
    """
    conflicts: set[int] = set()
    duplicates: set[str] = set()
    for name, external_id in claimed.items():
        holder = live_by_name.get(name.lower())
        if holder is None or holder[1] == external_id or holder[0] in moving:
            continue
        if seen is not None and holder[0] in seen:
            duplicates.add(name)
        else:
            conflicts.add(holder[0])
    return sorted(conflicts), duplicates


def page_events(diff: PageDiff, new_ids: Mapping[str, int], service: str) -> list[RepoEvent]:
    """The outbox events of a written page: one per added (``new_ids``: external id -> new
    repo id), restored, modified, renamed, archived and unarchived repo. Every payload names
    the external ``service`` that saw it."""
    out: list[RepoEvent] = []

    def add(kind: RepoEventKind, repo_id: int, **payload: object) -> None:
        out.append(RepoEvent(kind, repo_id, {"service": service, **payload}))

    for repo, name in diff.added:
        add(RepoEventKind.ADDED, new_ids[repo.external_id], name=name, external_id=repo.external_id)
    for c in diff.revived:
        add(RepoEventKind.RESTORED, c.stored.id, name=c.new_name)
    for c in diff.modified:
        add(RepoEventKind.MODIFIED, c.stored.id, name=c.new_name, fields=sorted(c.fields))
    for c in diff.renamed:
        add(RepoEventKind.RENAMED, c.stored.id, old_name=c.stored.name, name=c.new_name)
    for c in diff.archived:
        add(RepoEventKind.ARCHIVED, c.stored.id, name=c.new_name)
    for c in diff.unarchived:
        add(RepoEventKind.UNARCHIVED, c.stored.id, name=c.new_name)
    return out


def deleted_events(repo_ids: Iterable[int], service: str, reason: str) -> list[RepoEvent]:
    """``RepoDeleted`` for each repo removed (``reason``: "not listed", "name conflict")."""
    return [
        RepoEvent(RepoEventKind.DELETED, rid, {"service": service, "reason": reason})
        for rid in repo_ids
    ]
