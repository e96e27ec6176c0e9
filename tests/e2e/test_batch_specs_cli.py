"""``batch-changes apply`` from the command line against the emulator (SQLite and
PostgreSQL): a preview with diffs and skip reasons that writes nothing, then the apply run to
the end by the command itself, then a re-apply that writes nothing; bad specs are one-line
errors naming the field, exit status 2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from repo_updater.core.domain import HostKind, HostPullState
from repo_updater.emulator.server import RunningEmulator
from repo_updater.entrypoints.cli import main
from tests.support.operations import config_dict
from tests.support.specs import spec_data, synced_app

EXAMPLE = Path(__file__).parents[2] / "examples" / "upgrade-ci.yaml"


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_preview_then_apply_the_example_spec(
    store_url: str, emu: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gh = emu.state.host(HostKind.GITHUB)
    gh.add_repo("acme", "app")
    gh.add_repo("acme", "old", archived=True)
    gh.add_repo("acme", "forked", fork=True)
    gh.add_repo("acme", "payments")  # excluded by the example
    docs = gh.add_repo("acme", "docs")
    docs.git.branches["main"] = docs.git.commit_files("main", {".github/workflows/ci.yml": None},
                                                      "no CI").sha  # fmt: skip
    async with synced_app(store_url, emu):
        pass
    cfg = tmp_path / "repo-updater.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(store_url, emu)))

    code, out, err = await cli(capsys, "batch-changes", "apply", str(EXAMPLE), "--preview",
                               "--config", str(cfg))  # fmt: skip
    assert code == 0, err
    assert "=== github.test/acme/app: would change" in out
    assert "-      - uses: actions/checkout@v3\n+      - uses: actions/checkout@v4" in out
    assert "=== github.test/acme/old: skipped (archived)" in out
    assert "=== github.test/acme/forked: skipped (fork)" in out
    assert "=== github.test/acme/docs: skipped (no file matches)" in out
    assert "payments" not in out
    assert out.splitlines()[-1].startswith("preview: 1 of 4 repositories would change")
    assert gh.writes.log == []  # nothing written

    code, out, err = await cli(capsys, "batch-changes", "apply", str(EXAMPLE), "--config",
                               str(cfg))  # fmt: skip
    assert code == 0, err
    assert "apply spec 'upgrade-ci'" in out
    assert "finished: 1 done, 1 skipped, 0 failed of 2" in out
    assert "no file matches" in out
    (pull,) = gh.repo("acme/app").pulls.values()
    assert (pull.state, pull.head_ref) == (HostPullState.DRAFT, "batch/upgrade-ci")
    writes = len(gh.writes.log)

    code, out, err = await cli(capsys, "batch-changes", "apply", str(EXAMPLE), "--config",
                               str(cfg))  # fmt: skip
    assert code == 0, err
    assert "unchanged since the last apply" in out
    assert len(gh.writes.log) == writes  # a re-apply writes nothing

    code, out, _ = await cli(capsys, "changesets", "list", "--database", store_url)
    assert "github.test/acme/app" in out


async def test_a_bad_spec_is_one_line_error_naming_the_field(
    store_url: str, emu: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "repo-updater.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(store_url, emu)))
    bad = tmp_path / "spec.yaml"
    data = spec_data(published="sometimes")
    bad.write_text(yaml.safe_dump(data))
    code, _, err = await cli(capsys, "batch-changes", "apply", str(bad), "--config", str(cfg))
    assert code == 2
    assert "changeset.published: " in err
    code, _, err = await cli(capsys, "batch-changes", "apply", str(tmp_path / "none.yaml"),
                             "--config", str(cfg))  # fmt: skip
    assert code == 2 and "cannot read the spec" in err
