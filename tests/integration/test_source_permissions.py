"""``load_permissions`` of each source against the emulator: every page, each host's levels,
groups/teams and the owner's members, the owner of a user's repo, no reader that cannot read
the code, and failures mapped onto our errors. Also the emulator's admin API for access."""

from __future__ import annotations

import pytest

from repo_updater.core.domain import HostKind
from repo_updater.core.errors import NotFound, RateLimited, Unauthorized
from repo_updater.core.permissions import AccountPermission, RepoRef, merge_grants
from repo_updater.core.selection import Selection
from repo_updater.emulator.admin_client import EmulatorAdmin, EmulatorAdminError
from repo_updater.emulator.server import RunningEmulator
from repo_updater.emulator.state import EmulatedRepo, HostState
from repo_updater.sources import source_class
from repo_updater.sources.http import RetryPolicy
from repo_updater.sources.rest import RestSource

OWNERS = {
    HostKind.GITHUB: "acme",
    HostKind.GITLAB: "group/sub",
    HostKind.GITEA: "acme",
    HostKind.BITBUCKET_SERVER: "PRJ",
}
# How each host names the emulator's neutral levels read / write / maintain / admin.
NAMES = {
    HostKind.GITHUB: ("read", "write", "maintain", "admin"),
    HostKind.GITLAB: ("reporter", "developer", "maintainer", "owner"),
    HostKind.GITEA: ("read", "write", "write", "admin"),
    HostKind.BITBUCKET_SERVER: ("REPO_READ", "REPO_WRITE", "REPO_WRITE", "REPO_ADMIN"),
}
COLLABORATORS = 130  # more than one page everywhere (GitHub/GitLab 100, Gitea 50)
TOKEN = "tok-perm-SECRET-42"


def seed(host: HostState) -> EmulatedRepo:
    """A private repo with 130 collaborators (a quarter of them guests, who cannot read), a
    group with access, and two members of its owner."""
    repo = host.add_repo(OWNERS[host.kind], "secret", private=True)
    levels = ("read", "write", "admin", "guest")
    for i in range(COLLABORATORS):
        host.set_collaborator(repo.full_name, f"user-{i:03d}", levels[i % 4])
    host.groups["devs"] = ["dev-a", "user-001"]
    repo.group_access["devs"] = "maintain"
    host.owner_members[repo.owner] = {"boss": "admin"}
    return repo


def source(emu: RunningEmulator, kind: HostKind, token: str | None = None) -> RestSource:
    factory = source_class(kind)
    built = factory(
        base_url=emu.base_url(kind),
        token=token,
        selection=Selection(owners=(OWNERS[kind],)),
        retry=RetryPolicy(attempts=1, backoff=0.01, max_rate_limit_wait=0.0),
    )
    assert isinstance(built, RestSource)
    return built


async def load(src: RestSource, repo: EmulatedRepo) -> list[AccountPermission]:
    out: list[AccountPermission] = await src.load_permissions(  # type: ignore[attr-defined]
        RepoRef(external_id=str(repo.id), name=repo.full_name)
    )
    return out


@pytest.mark.parametrize("kind", list(HostKind))
async def test_every_reader_with_its_level_as_the_host_names_it(
    emu: RunningEmulator, kind: HostKind
) -> None:
    host = emu.state.host(kind)
    repo = seed(host)
    src = source(emu, kind)
    try:
        grants = {g.login: g for g in merge_grants(await load(src, repo))}
    finally:
        await src.aclose()
    read, write, maintain, admin = NAMES[kind]
    expected_users = {f"user-{i:03d}" for i in range(COLLABORATORS) if i % 4 != 3}
    assert set(grants) == expected_users | {"dev-a", "boss"}  # no guest
    assert (grants["user-000"].permission, grants["user-000"].access.value) == (read, "read")
    assert grants["user-005"].permission == write and grants["user-005"].access.value == "write"
    assert grants["user-002"].permission == admin and grants["user-002"].access.value == "admin"
    # In the group with a higher level than their own: the highest wins.
    assert grants["user-001"].permission == maintain and grants["dev-a"].permission == maintain
    assert grants["boss"].access.value == "admin"
    assert grants["user-000"].account_id == str(host.account_id("user-000"))


@pytest.mark.parametrize("kind", [HostKind.GITLAB, HostKind.GITEA])
async def test_gitlab_and_gitea_page_on_the_configured_url_not_the_links(
    emu: RunningEmulator, kind: HostKind
) -> None:
    """Their Link URLs start with the host's own idea of its URL (GitLab ``gitlab.host``, Gitea
    ``ROOT_URL``), where nothing listens: every page is still read, from the configured URL."""
    host = emu.state.host(kind)
    repo = seed(host)
    host.settings.external_url = "https://code.example.com"
    src = source(emu, kind)
    try:
        grants = {g.login for g in merge_grants(await load(src, repo))}
    finally:
        await src.aclose()
    assert {f"user-{i:03d}" for i in range(COLLABORATORS) if i % 4 != 3} <= grants


@pytest.mark.parametrize("kind", [HostKind.GITHUB, HostKind.GITLAB, HostKind.GITEA])
async def test_the_owner_of_a_users_repo_can_read_it(emu: RunningEmulator, kind: HostKind) -> None:
    host = emu.state.host(kind)
    repo = host.add_repo("alice", "notes", private=True)
    host.users.add("alice")
    host.set_collaborator(repo.full_name, "bob", "read")
    src = source(emu, kind)
    try:
        grants = {g.login: g.access.value for g in merge_grants(await load(src, repo))}
    finally:
        await src.aclose()
    assert grants == {"alice": "admin", "bob": "read"}


@pytest.mark.parametrize("kind", list(HostKind))
async def test_failures_map_onto_our_errors_without_the_token(
    emu: RunningEmulator, kind: HostKind
) -> None:
    host = emu.state.host(kind)
    repo = seed(host)
    gone = EmulatedRepo(id=999_999, owner=repo.owner, name="gone")
    host.token = TOKEN
    src = source(emu, kind, token=TOKEN)
    anonymous = source(emu, kind)
    try:
        with pytest.raises(NotFound):
            await load(src, gone)
        with pytest.raises(Unauthorized) as refused:
            await load(anonymous, repo)
        host.faults.rate_limited_next, host.faults.retry_after = 1, 30
        with pytest.raises(RateLimited) as limited:
            await load(src, repo)
    finally:
        await src.aclose()
        await anonymous.aclose()
    assert limited.value.retry_after == 30
    assert TOKEN not in str(refused.value) + str(limited.value)


async def test_gitea_and_bitbucket_share_what_several_repos_have(emu: RunningEmulator) -> None:
    """Team, group and project grants are asked once for many repos (cached), not per repo."""
    for kind in (HostKind.GITEA, HostKind.BITBUCKET_SERVER):
        host = emu.state.host(kind)
        repos = [host.add_repo(OWNERS[kind], f"r{i}", private=True) for i in range(5)]
        host.groups["devs"] = ["dev-a"]
        host.owner_members[OWNERS[kind]] = {"boss": "admin"}
        for r in repos:
            r.group_access["devs"] = "write"
        src = source(emu, kind)
        try:
            for r in repos:
                assert {g.login for g in await load(src, r)} == {"dev-a", "boss"}
            per_repo = src.counter.count / len(repos)
        finally:
            await src.aclose()
        assert per_repo <= 3.5, (kind, src.counter.by_kind)


async def test_admin_api_changes_collaborators_and_visibility(
    emu: RunningEmulator, admin: EmulatorAdmin
) -> None:
    await admin.add_repo("github", "acme", "app")
    info = await admin.set_collaborator("github", "acme/app", "alice", "write")
    assert info["collaborators"] == {"alice": "write"} and not info["private"]
    assert (await admin.set_visibility("github", "acme/app", True))["private"] is True
    await admin.set_group("github", "ops", ["olga"])
    await admin.set_group_access("github", "acme/app", "ops", "admin")
    await admin.set_owner_member("github", "acme", "owner-1", "admin")
    info = await admin.collaborators("github", "acme/app")
    assert info["effective"] == {"alice": "write", "olga": "admin", "owner-1": "admin"}
    await admin.set_collaborator("github", "acme/app", "alice", None)
    assert (await admin.collaborators("github", "acme/app"))["collaborators"] == {}
    for call, status in (
        (admin.set_collaborator("github", "acme/app", "alice", None), 404),
        (admin.set_collaborator("github", "acme/app", "bob", "superuser"), 400),
        (admin.set_collaborator("github", "acme/nope", "bob", "read"), 404),
        (admin.set_visibility("nohost", "acme/app", True), 404),
        (admin.set_owner_member("github", "nobody", "bob", "read"), 404),
    ):
        with pytest.raises(EmulatorAdminError) as refused:
            await call
        assert refused.value.status == status
