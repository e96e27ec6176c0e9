"""The pure half of the permissions syncer: host levels, merge, diff, events, which repos need a
sync after a repo diff, and the refresh schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repo_updater.core import diff as d
from repo_updater.core.domain import RepoEventKind, SourcedRepo
from repo_updater.core.permissions import (
    Access,
    AccountPermission,
    bitbucket_access,
    diff_permissions,
    gitea_access,
    github_access,
    gitlab_access,
    merge_grants,
    next_refresh_at,
    permission_events,
    plan_for_page,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def g(login: str, level: str = "read", account_id: str = "") -> AccountPermission:
    access = {"read": Access.READ, "write": Access.WRITE, "admin": Access.ADMIN}[level]
    return AccountPermission(login, level, access, account_id)


# --- host levels ------------------------------------------------------------------------------


def test_each_host_level_maps_onto_read_write_admin_or_no_read() -> None:
    assert github_access({"pull": True, "triage": True, "push": True}) == ("push", Access.WRITE)
    assert github_access({"pull": True, "admin": True}) == ("admin", Access.ADMIN)
    assert github_access({"pull": False}) is None and github_access({}) is None
    # GitLab: guests, planners and minimal access cannot read a private project's code.
    assert [gitlab_access(n) for n in (5, 10, 15)] == [None, None, None]
    assert gitlab_access(20) == ("reporter", Access.READ)
    assert gitlab_access(50) == ("owner", Access.ADMIN)
    assert gitea_access("none") is None and gitea_access("Owner") is Access.ADMIN
    assert bitbucket_access("PROJECT_VIEW") is None
    assert bitbucket_access("REPO_WRITE") is Access.WRITE


# --- merge and diff ---------------------------------------------------------------------------


def test_an_account_listed_twice_keeps_its_highest_grant_ignoring_case() -> None:
    merged = merge_grants([g("Alice", "read", "7"), g("bob", "write"), g("alice", "admin")])
    assert merged == [g("alice", "admin", "7"), g("bob", "write")]


def test_diff_writes_only_what_changed() -> None:
    stored = [g("alice", "admin"), g("bob", "write"), g("carol", "read")]
    fetched = [g("alice", "admin"), g("bob", "read"), g("dave", "write")]
    diff = diff_permissions(stored, fetched)
    assert diff.granted == [g("dave", "write")]
    assert diff.changed == [(g("bob", "write"), g("bob", "read"))]
    assert diff.revoked == [g("carol", "read")]
    assert diff.unchanged == 1 and diff.writes == 3
    assert diff_permissions(stored, reversed(stored)).empty


logins = st.sampled_from(["a", "A", "b", "c", "d"])
grant_lists = st.lists(
    st.builds(g, logins, st.sampled_from(["read", "write", "admin"])), max_size=8
)


@given(grant_lists, grant_lists)
def test_applying_the_diff_gives_what_the_host_says(
    before: list[AccountPermission], after: list[AccountPermission]
) -> None:
    stored = merge_grants(before)
    diff = diff_permissions(stored, after)
    result = {x.key: x for x in stored}
    for x in diff.revoked:
        del result[x.key]
    for _, new in diff.changed:
        result[new.key] = new
    for x in diff.granted:
        assert x.key not in result
        result[x.key] = x
    assert sorted(result.values(), key=lambda x: x.key) == merge_grants(after)
    assert diff_permissions(merge_grants(after), after).empty


def test_one_event_per_change_with_the_previous_level() -> None:
    diff = diff_permissions([g("bob", "write"), g("carol")], [g("bob", "admin"), g("dave")])
    events = permission_events(7, diff, why="because")
    kinds = [(e.kind, e.payload["login"]) for e in events]
    assert kinds == [
        (RepoEventKind.PERMISSION_GRANTED, "dave"),
        (RepoEventKind.PERMISSION_CHANGED, "bob"),
        (RepoEventKind.PERMISSION_REVOKED, "carol"),
    ]
    changed = events[1].payload
    assert (changed["permission"], changed["previous_permission"]) == ("admin", "write")
    assert {e.repo_id for e in events} == {7} and all(e.payload["why"] for e in events)


# --- which repos need a permissions sync ------------------------------------------------------


def repo(i: int, name: str = "", private: bool = True, **kw: object) -> SourcedRepo:
    return SourcedRepo(str(i), name or f"acme/r{i}", f"u{i}", private=private, **kw)  # type: ignore[arg-type]


def stored(r: SourcedRepo, **over: object) -> d.StoredRepo:
    values: dict[str, object] = dict(
        id=int(r.external_id), name=f"p/{r.name}", external_id=r.external_id,
        external_name=r.name, url=r.url, archived=r.archived, fork=r.fork, private=r.private,
        description=r.description, deleted=False, linked=True,
    )  # fmt: skip
    values.update(over)
    return d.StoredRepo(**values)  # type: ignore[arg-type]


def test_only_private_repos_that_are_new_or_changed_who_can_read_them_are_requested() -> None:
    was = {
        "2": stored(repo(2, private=False)),  # made private
        "3": stored(repo(3)),  # made public
        "4": stored(repo(4, name="acme/r4")),  # moved to another org
        "5": stored(repo(5, name="acme/r5")),  # renamed within its org
        "6": stored(repo(6), description="old"),  # description changed
        "7": stored(repo(7), deleted=True),  # restored, private
        "8": stored(repo(8, private=False), deleted=True),  # restored, public
        "9": stored(repo(9)),  # unchanged
    }
    page = [
        repo(1),  # new, private
        repo(10, private=False),  # new, public
        repo(2),
        repo(3, private=False),
        repo(4, name="other/r4"),
        repo(5, name="acme/renamed"),
        repo(6),
        repo(7),
        repo(8, private=False),
        repo(9),
    ]
    diff = d.diff_page(page, was, "p")
    plan = plan_for_page(diff, {"1": 101, "10": 110})
    assert sorted(plan.requests) == [
        (2, "made_private"),
        (4, "owner_changed"),
        (7, "restored"),
        (101, "added"),
    ]
    assert sorted(plan.made_public) == [3, 8]


def test_an_owner_renamed_only_in_case_is_no_change() -> None:
    was = {"1": stored(repo(1, name="Acme/r1"))}
    plan = plan_for_page(d.diff_page([repo(1, name="acme/r1")], was, "p"), {})
    assert plan.requests == [] and plan.made_public == []


# --- the refresh schedule ---------------------------------------------------------------------


def test_refresh_comes_back_within_the_interval_spread_by_the_jitter() -> None:
    day = timedelta(hours=24)
    times = [next_refresh_at(NOW, day, 0.1, draw / 10) for draw in range(10)]
    assert times[0] == NOW + day
    assert all(NOW + day * 0.9 < t <= NOW + day for t in times)
    assert len(set(times)) == 10
    assert next_refresh_at(NOW, day, 0.0, 0.7) == NOW + day
    for bad in ((day, 1.0, 0.5), (day, 0.1, 1.0), (timedelta(0), 0.1, 0.5)):
        with pytest.raises(ValueError):
            next_refresh_at(NOW, *bad)


def test_bad_permission_settings_are_a_clear_config_error() -> None:
    from repo_updater.config import ConfigError, parse_config

    config = parse_config({"permissions": {"refresh_interval": 3600}}, {})
    assert config.permissions.refresh_interval == 3600 and config.permissions.enabled
    for bad, field in (
        ({"refresh_jitter": 0.9}, "permissions.refresh_jitter"),
        ({"refresh_interval": 0}, "permissions.refresh_interval"),
        ({"every": 5}, "permissions.every"),
    ):
        with pytest.raises(ConfigError, match=field):
            parse_config({"permissions": bad}, {})
