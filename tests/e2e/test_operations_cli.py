"""Bulk operations through the CLI (``main`` in a thread while the emulator answers on this
test's loop; SQLite and PostgreSQL): a dry run, an operation run to the end by the command
itself with a progress line and a summary, enqueue-only and the ``operations`` commands, and
bad input as a one-line error with exit status 2."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from repo_updater.core.domain import HostPullState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.cli import main
from tests.support.operations import OWNERS, config_dict, tracked


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
async def setup(store_url: str, emu: RunningEmulator, tmp_path: Path) -> tuple[str, str]:
    """Every host with a repo of three pull requests (one merged), all tracked in ``bc``;
    returns the config file and the database URL."""
    for kind, owner in OWNERS.items():
        host = emu.state.host(kind)
        repo = host.add_repo(owner, "app")
        for i in range(3):
            host.add_pull(repo.full_name, title=f"pr {i}", head_ref=f"b{i}")
        host.set_pull_state(repo.full_name, 3, HostPullState.MERGED)
    async with tracked(store_url, emu):
        pass
    path = tmp_path / "repo-updater.yaml"
    path.write_text(yaml.safe_dump(config_dict(store_url, emu)))
    return str(path), store_url


async def test_close_from_the_command_line(
    setup: tuple[str, str], emu: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg, db = setup
    code, out, _ = await cli(capsys, "changesets", "close", "--batch-change", "bc",
                             "--dry-run", "--config", cfg)  # fmt: skip
    assert code == 0
    assert "github.test/acme/app#3" in out and "skip: already merged" in out
    assert out.splitlines()[-1] == "dry run: 8 of 12 changesets would be written to"

    code, out, err = await cli(capsys, "changesets", "close", "--batch-change", "bc",
                               "--state", "OPEN", "--config", cfg)  # fmt: skip
    assert code == 0, err
    assert "operation 1: close on batch change 'bc'" in out
    assert "finished: 8 done, 0 skipped, 0 failed of 8" in out
    assert "8/8" in err  # the progress line
    for kind, owner in OWNERS.items():
        pulls = emu.state.host(kind).repo(f"{owner}/app").pulls
        assert [p.state for p in pulls.values()] == [HostPullState.CLOSED] * 2 + [
            HostPullState.MERGED
        ]

    code, out, _ = await cli(capsys, "changesets", "comment", "--batch-change", "bc", "--body",
                             "Superseded", "--no-wait", "--database", db)  # fmt: skip
    assert code == 0 and "operations show 2" in out
    code, out, _ = await cli(capsys, "operations", "list", "--json", "--database", db)
    listed = json.loads(out)
    assert [(o["id"], o["kind"], o["state"], o["pending"]) for o in listed] == [
        (2, "comment", "running", 12),
        (1, "close", "finished", 0),
    ]
    code, out, _ = await cli(capsys, "operations", "show", "1", "--database", db)
    assert code == 0 and "8 done, 0 skipped, 0 failed, 0 pending of 8" in out


BAD_INPUT = [
    (("changesets", "close", "--batch-change", "nope"), "no batch change named 'nope'"),
    (("changesets", "update", "--batch-change", "bc"), "an update needs a new title"),
    (("changesets", "close", "--batch-change", "bc", "--id", "999"), "not tracked"),
    (("operations", "show", "77"), "no operation with id 77"),
]


async def test_bad_input_is_one_line_and_exit_2(
    setup: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, db = setup
    for argv, message in BAD_INPUT:
        code, _, err = await cli(capsys, *argv, "--database", db)
        assert code == 2 and message in err and "Traceback" not in err, (argv, err)
    _, out, _ = await cli(capsys, "operations", "list", "--database", db)
    assert out.strip() == "(none)"
