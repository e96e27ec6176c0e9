"""The pure diff: property tests on plain values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from repo_updater.core import diff as d
from repo_updater.core.domain import SourcedRepo


def sourced(i: int, name: str | None = None, archived: bool = False) -> SourcedRepo:
    return SourcedRepo(external_id=str(i), name=name or f"o/r{i}", url=f"u{i}", archived=archived)


def stored_from(repo: SourcedRepo, rid: int, **over: object) -> d.StoredRepo:
    base = dict(
        id=rid,
        name=f"p/{repo.name}",
        external_id=repo.external_id,
        external_name=repo.name,
        url=repo.url,
        archived=repo.archived,
        fork=repo.fork,
        private=repo.private,
        description=repo.description,
        deleted=False,
        linked=True,
    )
    base.update(over)
    return d.StoredRepo(**base)  # type: ignore[arg-type]


listings = st.lists(
    st.tuples(st.integers(1, 30), st.sampled_from(["a", "b", "c", "A"]), st.booleans()),
    max_size=40,
)


@given(listings)
def test_dedupe_keeps_unique_ids_and_names_within_a_page(
    items: list[tuple[int, str, bool]],
) -> None:
    page = [sourced(i, name=f"o/{n}{i % 3}", archived=a) for i, n, a in items]
    kept, dropped = d.dedupe_page(page)
    assert len(kept) + dropped == len(page)
    assert len({r.external_id for r in kept}) == len(kept)
    assert len({r.name.lower() for r in kept}) == len(kept)


@given(st.sets(st.integers(0, 200_000), max_size=300), st.integers(0, 200_000))
def test_seen_ids_bitmap_is_a_set(ids: set[int], probe: int) -> None:
    seen = d.SeenIds()
    seen.update(ids)
    seen.update(ids)
    assert seen.count == len(ids)
    assert all(i in seen for i in ids)
    assert (probe in seen) == (probe in ids)
    assert d.removed_ids(range(0, 300), seen) == sorted(set(range(0, 300)) - ids)


def test_repeats_of_earlier_pages_are_dropped_by_id_and_by_name() -> None:
    a = sourced(1)
    seen = d.SeenIds()
    seen.add(1)
    diff = d.diff_page([a, sourced(2)], {"1": stored_from(a, 1)}, "p", seen)
    assert diff.duplicates == 1 and [r.external_id for r, _ in diff.added] == ["2"]
    conflicts, repeated = d.name_conflicts({"p/o/r1": "9"}, {"p/o/r1": (1, "1")}, seen=seen)
    assert conflicts == [] and repeated == {"p/o/r1"}
    diff = d.diff_page([sourced(9, name="o/r1")], {}, "p", seen)
    assert diff.drop_claims(repeated) == 1 and diff.added == []


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=30))
def test_archived_flips_are_exactly_the_changed_flags(flags: list[tuple[bool, bool]]) -> None:
    page = [sourced(i, archived=new) for i, (_, new) in enumerate(flags)]
    stored = {
        r.external_id: stored_from(r, i, archived=old)
        for i, (r, (old, _)) in enumerate(zip(page, flags, strict=True))
    }
    diff = d.diff_page(page, stored, "p")
    assert {c.sourced.external_id for c in diff.archived} == {
        str(i) for i, (old, new) in enumerate(flags) if new and not old
    }
    assert {c.sourced.external_id for c in diff.unarchived} == {
        str(i) for i, (old, new) in enumerate(flags) if old and not new
    }
    assert len(diff.modified) == len(diff.archived) + len(diff.unarchived)
    assert len(diff.modified) + len(diff.unmodified) == len(page)


def test_every_category() -> None:
    a, b, c, e = sourced(1), sourced(2, name="o/new"), sourced(3), sourced(4)
    stored = {
        "2": stored_from(sourced(2), 2),
        "3": stored_from(c, 3, deleted=True, linked=False),
        "4": stored_from(e, 4, linked=False),
    }
    diff = d.diff_page([a, b, c, e], stored, "p")
    assert [r.external_id for r, _ in diff.added] == ["1"] and diff.added[0][1] == "p/o/r1"
    assert [x.stored.id for x in diff.renamed] == [2] and diff.renamed[0].new_name == "p/o/new"
    assert [x.stored.id for x in diff.revived] == [3]
    assert [x.id for x in diff.unmodified] == [4] and [x.id for x in diff.to_link] == [4]
    assert not diff.writes_nothing
    assert set(diff.claims()) == {"p/o/r1", "p/o/new", "p/o/r3"}


def test_unchanged_linked_page_writes_nothing() -> None:
    page = [sourced(i) for i in range(5)]
    diff = d.diff_page(page, {r.external_id: stored_from(r, i) for i, r in enumerate(page)}, "p")
    assert diff.writes_nothing and len(diff.unmodified) == 5


def test_removed_ids_and_name_conflicts() -> None:
    assert d.removed_ids([5, 1, 3], {1}) == [3, 5]
    assert d.name_conflicts({"p/x": "9", "p/y": "2"}, {"p/x": (1, "1"), "p/y": (2, "2")}) == (
        [1],
        set(),
    )


@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()), max_size=30))
def test_revived_repos_carry_their_flips(flags: list[tuple[bool, bool, bool, bool]]) -> None:
    """Issue 7.2: a repo that left the listing and comes back (deleted -> revived) archived,
    unarchived or renamed is in ``archived`` / ``unarchived`` / ``renamed`` like a live one,
    so its changesets follow at once. ``(deleted, old archived, new archived, renamed)``."""
    page = [
        sourced(i, name=f"o/new{i}" if renamed else None, archived=new)
        for i, (_, _, new, renamed) in enumerate(flags)
    ]
    stored = {
        str(i): stored_from(sourced(i), i, archived=old, deleted=deleted, linked=not deleted)
        for i, (deleted, old, _, _) in enumerate(flags)
    }
    diff = d.diff_page(page, stored, "p")

    def ids(changes: list[d.Change]) -> set[str]:
        return {c.sourced.external_id for c in changes}

    assert ids(diff.archived) == {str(i) for i, (_, o, n, _) in enumerate(flags) if n and not o}
    assert ids(diff.unarchived) == {str(i) for i, (_, o, n, _) in enumerate(flags) if o and not n}
    assert ids(diff.renamed) == {str(i) for i, (*_, r) in enumerate(flags) if r}
    assert ids(diff.revived) == {str(i) for i, (dl, *_) in enumerate(flags) if dl}
    # Every repo is in exactly one of revived / modified / unmodified.
    assert len(diff.revived) + len(diff.modified) + len(diff.unmodified) == len(page)
    events = d.page_events(diff, {}, "svc")
    archived_events = {e.repo_id for e in events if e.kind == "RepoArchived"}
    assert archived_events == {c.stored.id for c in diff.archived}
