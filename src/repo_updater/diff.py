"""The repo diff: pure functions that compare what a code host lists with what is stored.

A listing is processed page by page (memory stays flat in the size of the listing). For each
page the syncer calls :func:`dedupe_page` (drop repeats of an external id or a name seen earlier
in the same listing), then :func:`diff_page` against the stored rows it looked up for that page.
Removals are only known at the end of a *complete* listing: :func:`removed_ids`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from repo_updater.domain import SourcedRepo


@dataclass(frozen=True, slots=True)
class StoredRepo:
    """The stored fields the diff compares (a slice of ``repos``)."""

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

    @property
    def writes_nothing(self) -> bool:
        return not (self.added or self.revived or self.modified or self.to_link)

    def claimed_names(self) -> set[str]:
        """Store names that this page will (re)occupy: conflicts must be resolved for them."""
        names = {name for _, name in self.added}
        names.update(c.new_name for c in self.revived)
        names.update(c.new_name for c in self.renamed)
        return names


def store_name(prefix: str, external_name: str) -> str:
    return f"{prefix}/{external_name}" if prefix else external_name


@dataclass(slots=True)
class Seen:
    """What a listing has yielded so far, for de-duplication across pages."""

    external_ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)


def dedupe_page(page: Iterable[SourcedRepo], seen: Seen) -> tuple[list[SourcedRepo], int]:
    """Keep the first occurrence by external id, then by (case-insensitive) name.

    Updates ``seen``; returns the kept repos and how many were dropped.
    """
    kept: list[SourcedRepo] = []
    dropped = 0
    for repo in page:
        lowered = repo.name.lower()
        if repo.external_id in seen.external_ids or lowered in seen.names:
            dropped += 1
            continue
        seen.external_ids.add(repo.external_id)
        seen.names.add(lowered)
        kept.append(repo)
    return kept, dropped


def changed_fields(stored: StoredRepo, sourced: SourcedRepo, new_name: str) -> frozenset[str]:
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
) -> PageDiff:
    """Classify one de-duplicated page against the stored rows with the same external ids."""
    diff = PageDiff()
    for repo in page:
        name = store_name(name_prefix, repo.name)
        stored = stored_by_external_id.get(repo.external_id)
        if stored is None:
            diff.added.append((repo, name))
            continue
        fields = changed_fields(stored, repo, name)
        change = Change(stored=stored, sourced=repo, new_name=name, fields=fields)
        if stored.deleted:
            diff.revived.append(change)
        elif fields:
            diff.modified.append(change)
        else:
            diff.unmodified.append(stored)
        if not stored.linked and not stored.deleted:
            diff.to_link.append(stored)
        if stored.deleted:
            continue
        if "archived" in fields:
            (diff.archived if repo.archived else diff.unarchived).append(change)
        if "name" in fields and stored.name != name:
            diff.renamed.append(change)
    return diff


def removed_ids(linked_ids: Iterable[int], seen_ids: set[int]) -> list[int]:
    """Repos linked to the service that a complete listing did not yield."""
    return sorted(i for i in linked_ids if i not in seen_ids)


def name_conflicts(
    claimed: Mapping[str, str],
    live_by_name: Mapping[str, tuple[int, str]],
    moving: frozenset[int] = frozenset(),
) -> list[int]:
    """Ids of live stored repos that hold a name a sourced repo now claims.

    ``claimed`` maps store name -> external id of the sourced repo claiming it;
    ``live_by_name`` maps store name -> (repo id, external id) of the live row holding it.
    A row holding its own name is no conflict, nor is one that this page renames away
    (``moving``). The code host is the truth: the old holder was renamed or deleted there, so
    it makes way.
    """
    out = []
    for name, external_id in claimed.items():
        holder = live_by_name.get(name)
        if holder is not None and holder[1] != external_id and holder[0] not in moving:
            out.append(holder[0])
    return sorted(set(out))
