"""What makes the command line self-explaining and safe to script: help on every command and
flag, --version, read commands that refuse a missing database, every output format, a quiet
exit when the reader of a pipe goes away, JSON log lines, and `events list --follow`."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from repo_updater.entrypoints.cli import build_parser, main
from repo_updater.entrypoints.cli.output import relative
from tests.e2e.test_cli import CLI, DEADLINE, cli_env

READ_COMMANDS = [
    ["repos", "list"],
    ["services", "list"],
    ["services", "history", "gh"],
    ["events", "list"],
    ["batch-changes", "list"],
    ["batch-changes", "status", "x"],
    ["changesets", "list"],
    ["tokens", "list"],
    ["repos", "permissions", "acme/x"],
    ["accounts", "repos", "alice", "--service", "gh"],
    ["operations", "list"],
    ["operations", "show", "1"],
]


def walk(
    parser: argparse.ArgumentParser, path: str = "repo-updater"
) -> Iterator[tuple[str, str, object]]:
    """(command path, what, its help) for every command and every option and argument."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield path, f"command {name}", helps.get(name)
                yield from walk(sub, f"{path} {name}")
        else:
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_command_and_flag_has_help() -> None:
    missing = [
        f"{path}: {what}"
        for path, what, help_ in walk(build_parser())
        if not help_ or help_ == argparse.SUPPRESS
    ]
    assert not missing, "no help text: " + ", ".join(missing)
    commands = [what for _, what, _ in walk(build_parser()) if what.startswith("command")]
    assert len(commands) > 25  # the walk reached the nested commands


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("repo-updater ") and out.split()[1][0].isdigit()


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("REPO_UPDATER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_read_commands_refuse_a_database_that_does_not_exist(
    workdir: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no database at repo-updater.db") and "--database" in err, err
    assert list(workdir.iterdir()) == [], "nothing created"


def test_every_output_format(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = ["--database", f"sqlite:///{workdir}/out.db"]
    for name in ("node-22", "upgrade, ci"):  # a comma: csv must quote it
        assert main(["batch-changes", "create", name, "--description", "d", *db]) == 0
    capsys.readouterr()

    def out(*fmt: str) -> str:
        assert main(["batch-changes", "list", *fmt, *db]) == 0
        return capsys.readouterr().out

    table = out().splitlines()
    assert table[0].split()[:4] == ["ID", "NAME", "STATE", "CHANGESET_COUNT"]
    assert "just now" in table[1]  # relative times in tables
    listed = json.loads(out("--output", "json"))
    assert [b["name"] for b in listed] == ["node-22", "upgrade, ci"]
    assert out("--json") == out("-o", "json")  # the old flag is an alias
    created = listed[0]["created_at"]
    assert created.endswith("+00:00") and "T" in created  # ISO 8601 for scripts
    lines = out("-o", "ndjson").splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["node-22", "upgrade, ci"]
    rows = list(csv.DictReader(io.StringIO(out("-o", "csv"))))
    assert [r["name"] for r in rows] == ["node-22", "upgrade, ci"]
    assert rows[0]["state"] == "OPEN" and rows[0]["closed_at"] == ""
    # A batch change by name or id; a clear error for neither.
    assert main(["batch-changes", "close", "upgrade, ci", *db]) == 0
    assert main(["batch-changes", "close", "1", *db]) == 0
    assert "id 1" in capsys.readouterr().out
    assert main(["batch-changes", "status", "nope", *db]) == 2
    assert "no batch change named 'nope'" in capsys.readouterr().err


def test_relative_times() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    cases = [(timedelta(seconds=2), "just now"), (timedelta(seconds=40), "40 s ago"),
             (timedelta(minutes=3, seconds=5), "3 min ago"), (timedelta(hours=5), "5 h ago"),
             (timedelta(days=-2), "in 2 d"), (timedelta(minutes=-90), "in 1 h")]  # fmt: skip
    assert [relative(now - ago, now) for ago, _ in cases] == [want for _, want in cases]
    assert relative(None, now) == ""


def many_batch_changes(path: Path, count: int) -> str:
    """A migrated store with ``count`` batch changes: enough output to fill a pipe."""
    url = f"sqlite:///{path}"
    assert main(["migrate", "--database", url]) == 0
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO batch_changes (name, description, state, created_at) "
            "VALUES (?, '', 'OPEN', '2026-01-01 00:00:00')",
            [(f"change-{i}",) for i in range(count)],
        )
    return url


def test_a_closed_pipe_ends_quietly(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = many_batch_changes(workdir / "many.db", 20_000)
    capsys.readouterr()
    for fmt in ("table", "ndjson"):
        proc = subprocess.Popen(
            [*CLI, "batch-changes", "list", "-o", fmt, "--database", url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        proc.stderr.close()
        code = proc.wait(timeout=120)
        assert first and code == 141 and err == "", (fmt, code, err)


def test_json_log_lines(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"database: sqlite:///{tmp_path}/log.db\nlog_format: json\n")
    done = subprocess.run(
        [*CLI, "-v", "migrate", "--config", str(config)],
        capture_output=True, text=True, env=cli_env(), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines and {"time", "level", "logger", "message"} <= set(lines[0])
    text = subprocess.run(
        [*CLI, "-v", "--log-format", "text", "migrate", "--config", str(config)],
        capture_output=True, text=True, env=cli_env(), timeout=120, check=False,
    )  # fmt: skip
    assert text.returncode == 0 and text.stderr and not text.stderr.startswith("{"), text.stderr


def test_events_follow_streams_new_events_until_interrupted(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workdir / "follow.db"
    url = f"sqlite:///{path}"
    assert main(["migrate", "--database", url]) == 0
    proc = subprocess.Popen(
        [*CLI, "events", "list", "--follow", "-o", "ndjson", "--database", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(), text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # let it print what exists (nothing) and start following
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO events (kind, repo_id, payload, created_at) "
                "VALUES ('RepoArchived', 7, '{\"name\": \"acme/x\"}', '2026-01-01 00:00:00')"
            )
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the event is printed
        event = json.loads(line)
        assert (event["kind"], event["repo_id"], event["payload"]) == (
            "RepoArchived", 7, {"name": "acme/x"},
        )  # fmt: skip
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=DEADLINE)
    assert proc.stderr is not None and proc.stdout is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    assert code in (0, 130) and "Traceback" not in err, err


def test_help_is_fast_enough_to_not_import_the_service() -> None:
    """``--help`` imports no command module's dependencies (the speed itself is measured in
    bench/cli_help.py): no SQLAlchemy, aiohttp, httpx or pydantic after printing help."""
    probe = (
        "import sys\n"
        "from repo_updater.entrypoints.cli import main\n"
        "try:\n    main(['changesets', 'list', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('sqlalchemy', 'aiohttp', 'httpx', 'pydantic', 'prometheus_client')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=cli_env(), timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout, done.stdout
