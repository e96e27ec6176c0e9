"""The ``repo-updater`` command line as a user runs it: real subprocesses in a temporary working
directory, the emulator in its own process (``repo-updater emulator serve``), a SQLite file."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from repo_updater.entrypoints.cli import main

DEADLINE = 30.0
CLI = [sys.executable, "-m", "repo_updater.entrypoints.cli"]
PREFIX = "gh.local"


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPO_UPDATER_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(cwd: Path, *args: str) -> str:
    done = run(cwd, *args)
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_all(cwd: Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands at the same time (each CLI start costs about a second)."""
    procs = [
        subprocess.Popen(
            [*CLI, *args],
            cwd=cwd,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done = []
    try:
        for args, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=120)
            done.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def ok_all(cwd: Path, *commands: tuple[str, ...]) -> list[str]:
    outs = []
    for done in run_all(cwd, *commands):
        assert done.returncode == 0, f"{done.args}: exit {done.returncode}\n{done.stderr}"
        outs.append(done.stdout)
    return outs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[Any]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=DEADLINE)
            raise
    return proc.returncode


def wait_until(check: Any, what: str, proc: subprocess.Popen[Any] | None = None) -> Any:
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {DEADLINE}s")
        time.sleep(0.1)


# --- invalid configuration --------------------------------------------------------------------

GOOD_SERVICE = {"name": "gh", "kind": "github", "url": "https://api.github.com", "orgs": ["acme"]}
BAD_CONFIGS: dict[str, tuple[Any, list[str]]] = {
    # case: (the config (a string: the file's text), what the message must name)
    "credentials-in-url": (
        {"external_services": [{**GOOD_SERVICE, "url": "https://me:ghp_inline@github.com"}]},
        ["external_services.0.url", "token_env"],
    ),
    "unknown-field": (
        {"repo_sync_intervall": 5, "external_services": [GOOD_SERVICE]},
        ["repo_sync_intervall"],
    ),
    "bad-url": (
        {"external_services": [{**GOOD_SERVICE, "url": "ftp://example.com"}]},
        ["external_services.0.url", "http"],
    ),
    "token-env-unset": (
        {"external_services": [{**GOOD_SERVICE, "token_env": "RU_TEST_UNSET"}]},
        ["external_services.0.token_env", "RU_TEST_UNSET"],
    ),
    "negative-interval": (
        {"repo_sync_interval": -1, "external_services": [GOOD_SERVICE]},
        ["repo_sync_interval"],
    ),
    "duplicate-names": (
        {"external_services": [GOOD_SERVICE, GOOD_SERVICE]},
        ["external_services.1.name", "duplicate"],
    ),
    "not-yaml": ("external_services: [\n  - name: gh\n    kind: {", ["not valid YAML"]),
}
# Run as a user runs them (each CLI start costs about a second); the others in-process.
SUBPROCESS_CASES = ("credentials-in-url", "unknown-field")


def write_config(workdir: Path, case: str) -> list[str]:
    """The case's config file in ``workdir`` (its database in ``workdir`` too); the command."""
    workdir.mkdir(exist_ok=True)
    config = BAD_CONFIGS[case][0]
    if isinstance(config, dict):
        config = yaml.safe_dump({"database": f"sqlite:///{workdir}/store.db", **config})
    (workdir / "repo-updater.yaml").write_text(config)
    command = "serve" if case == "unknown-field" else "sync"
    return [command, "--config", f"{workdir}/repo-updater.yaml"]


def config_problems(case: str, code: int | str | None, out: str, err: str, workdir: Path) -> str:
    problems = []
    if code != 2:
        problems.append(f"exit {code}")
    if not err.startswith("error: "):
        problems.append("no 'error:' line on stderr")
    problems += [f"{w!r} not named" for w in BAD_CONFIGS[case][1] if w.lower() not in err.lower()]
    if "ghp_inline" in out + err:
        problems.append("the inline credential was echoed")
    if "Traceback" in err:
        problems.append("a traceback")
    created = sorted(p.name for p in workdir.iterdir())
    if created != ["repo-updater.yaml"]:
        problems.append(f"files created: {created}")
    if not problems:
        return ""
    return f"{case}: {'; '.join(problems)}\nstdout: {out}\nstderr: {err}"


def test_invalid_config_exits_2_names_the_field_and_creates_nothing(tmp_path: Path) -> None:
    commands = [tuple(write_config(tmp_path / case, case)) for case in SUBPROCESS_CASES]
    failures = [
        config_problems(case, done.returncode, done.stdout, done.stderr, tmp_path / case)
        for case, done in zip(SUBPROCESS_CASES, run_all(tmp_path, *commands), strict=True)
    ]
    assert not any(failures), "\n\n".join(failures)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SUBPROCESS_CASES)


@pytest.mark.parametrize("case", [c for c in BAD_CONFIGS if c not in SUBPROCESS_CASES])
def test_invalid_config_in_process(
    in_process: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    code = main(write_config(in_process, case))
    captured = capsys.readouterr()
    assert not config_problems(case, code, captured.out, captured.err, in_process)


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """For checks too cheap to pay a process start for: ``main()`` in this process, in an
    empty working directory, with the logger levels it changes restored afterwards."""
    for name in list(os.environ):
        if name.startswith("REPO_UPDATER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    levels = {n: logging.getLogger(n).level for n in ("httpx", "alembic")}
    yield tmp_path
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["batch-changes", "create", "   "], "must not be empty"),
        (["batch-changes", "create", "x" * 201], "at most 200"),
        (["changesets", "track", "--batch-change", "1", "--repo", "r", "--number", "0"], "between"),
        (
            ["changesets", "track", "--batch-change", "1", "--repo", "r", "--number", "2147483648"],
            "between",
        ),
        (["changesets", "track", "--batch-change", "1", "--repo", "r", "--number", "x"], "x"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    in_process: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(in_process.iterdir()) == [], "nothing created"


def test_unreachable_database_is_a_message_not_a_traceback(
    in_process: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["repos", "list", "--database", "postgresql://postgres@127.0.0.1:1/none"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert list(in_process.iterdir()) == []


def test_unopenable_sqlite_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    # A subprocess, and only the start of stderr is checked: aiosqlite 0.22 does not wait for
    # its worker thread after a failed connect, which then sometimes prints "Event loop is
    # closed" from that thread at exit (a dependency race, not the CLI's error handling).
    # (A read command refuses a missing file before opening it: test_cli_usability.py.)
    done = run(tmp_path, "migrate", "--database", f"sqlite:///{tmp_path}/no/dir/x.db")
    assert done.returncode == 1
    assert done.stderr.startswith("error: database: unable to open database file"), done.stderr
    assert list(tmp_path.iterdir()) == []


# --- a user's session against the emulator ------------------------------------------------------


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[str]:
    """``repo-updater emulator serve --seed-github 1x30 --pulls 1`` on a free port."""
    port = free_port()
    log = (tmp_path / "emulator.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "emulator", "serve", "--port", str(port), "--seed-github", "1x30", "--pulls", "1"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/_admin", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, "the emulator answering", proc)
        yield url
    finally:
        stop(proc)
        log.close()


def changeset_states(db: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT external_id, external_state FROM changesets").fetchall()


def test_sync_archive_track_and_serve(tmp_path: Path, emulator: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    db = work / "cli.db"
    config = {
        "database": f"sqlite:///{db}",
        "repo_sync_interval": 0.5,
        "changeset_poll_interval": 0.2,
        "api": {"host": "127.0.0.1", "port": 0},
        "external_services": [
            {
                "name": "gh",
                "kind": "github",
                "url": f"{emulator}/github",
                "orgs": ["acme"],
                "name_prefix": PREFIX,
            }
        ],
    }
    (work / "repo-updater.yaml").write_text(yaml.safe_dump(config))
    cfg = ("--config", "repo-updater.yaml")

    out = ok(work, "sync", *cfg)
    assert "gh: complete" in out and "added 30" in out
    # The emulator seeded one org called 'acme' (as `emulator serve --help` says).
    listing, archive = ok_all(
        work,
        ("repos", "list", *cfg),
        ("emulator", "archive", "acme/repo-3", "--url", emulator),
    )
    listed = listing.splitlines()
    assert listed[0].split()[:3] == ["ID", "NAME", "ARCHIVED"]
    assert len(listed) == 31
    assert f"{PREFIX}/acme/repo-3" in listing
    assert " yes " not in listing  # nothing archived yet
    assert "archived acme/repo-3" in archive

    out = ok(work, "sync", *cfg)
    assert "archived 1," in out and "added 0" in out
    archived_table, created = ok_all(
        work,
        ("repos", "list", "--archived", *cfg),
        ("batch-changes", "create", "upgrade-ci", *cfg),
    )
    archived = archived_table.splitlines()
    assert len(archived) == 2, archived
    assert archived[1].split()[1:3] == [f"{PREFIX}/acme/repo-3", "yes"]
    assert "'upgrade-ci' (id 1)" in created

    repo = f"{PREFIX}/acme/repo-5"
    track = ("changesets", "track", "--batch-change", "upgrade-ci", "--number")
    tracked, again, unknown, no_pull = run_all(
        work,
        (*track, "1", "--repo", repo, *cfg),
        ("batch-changes", "create", "upgrade-ci", *cfg),
        (*track, "1", "--repo", f"{PREFIX}/acme/nope", *cfg),
        (*track, "1", "99", "--repo", f"{PREFIX}/acme/repo-6", *cfg),  # #99 is not on the host
    )
    assert tracked.returncode == 0, tracked.stderr
    assert f"tracking {repo}#1 as changeset 1" in tracked.stdout
    assert again.returncode == 2 and "exists already" in again.stderr
    assert unknown.returncode == 2 and "no repository named" in unknown.stderr
    assert no_pull.returncode == 2 and "has no pull request #99" in no_pull.stderr, no_pull
    assert "Traceback" not in again.stderr + unknown.stderr + no_pull.stderr
    assert changeset_states(db) == [("1", None)], "nothing tracked for the missing pull request"

    # `changesets sync` syncs now and prints the result; by id or by batch change.
    synced = ok(work, "changesets", "sync", "1", *cfg)
    assert synced.splitlines()[1].split()[:4] == ["1", repo, "1", "OPEN"], synced
    assert changeset_states(db) == [("1", "OPEN")]
    queued, status = ok_all(
        work,
        ("changesets", "sync", "--batch-change", "upgrade-ci", "--queue", *cfg),
        ("batch-changes", "status", "upgrade-ci", *cfg),
    )
    assert "sync requested for 1 changeset" in queued
    assert "1 changesets: open 1" in status and "burndown" in status, status
    assert "needs action: nothing" in status

    # `serve` syncs the tracked changeset, and notices an archive on the emulator.
    serve_log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen(
        [*CLI, "serve", *cfg], cwd=work, env=cli_env(), stdout=serve_log, stderr=subprocess.STDOUT
    )
    try:
        wait_until(lambda: changeset_states(db) == [("1", "OPEN")], "the changeset sync", serve)
        (cs,) = json.loads(ok(work, "changesets", "list", "--json", *cfg))
        assert (cs["repo_name"], cs["number"], cs["batch_change_ids"]) == (repo, 1, [1])
        assert (cs["external_state"], cs["title"]) == ("OPEN", "Batch change 0 on repo-5")
        ok(work, "emulator", "archive", "acme/repo-5", "--url", emulator)
        wait_until(lambda: changeset_states(db) == [("1", "READONLY")], "READONLY", serve)
        assert stop(serve) == 0
    finally:
        stop(serve)
        serve_log.close()
    table, status, readonly = ok_all(
        work,
        ("changesets", "list", *cfg),
        ("batch-changes", "status", "1", *cfg),  # by id as well as by name
        ("changesets", "list", "--state", "readonly", "--limit", "5", "-o", "ndjson", *cfg),
    )
    assert "READONLY" in table and repo in table
    assert "+00:00" not in table and ("ago" in table or "just now" in table)  # relative times
    assert "1 READONLY: their repositories are archived" in status, status
    assert f"#1 {repo}#1 READONLY" in status
    assert [json.loads(line)["external_state"] for line in readonly.splitlines()] == ["READONLY"]
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith("cli.db")) == [
        "repo-updater.yaml"
    ]


# --- the demo ---------------------------------------------------------------------------------


def test_demo_once_shows_readonly_then_open(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    done = subprocess.run(
        [
            *CLI,
            "demo",
            "--once",
            "--emulator-port",
            "0",
            "--api-port",
            "0",
            "--interval",
            "0.5",
            "--database",
            f"sqlite:///{db}",
        ],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, f"{out}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert "webhooks: every emulated host delivers to http://127.0.0.1:" in out
    readonly_at = out.index("(the webhook) its changesets are READONLY:")
    back_at = out.index("they are back to what the host says:")
    assert readonly_at < back_at
    during = out[readonly_at:back_at]
    readers_at = out.index("acme/payments is private; who can read it")
    operations_at = out.index("bulk operations:")
    assert back_at < readers_at < operations_at
    after = out[back_at:readers_at]
    assert during.count("READONLY") >= 3 and "OPEN " not in during
    assert "acme/repo-1#1" in after and "OPEN" in after and "DRAFT" in after
    assert "READONLY" not in after
    # Who can read the private repo, then a collaborator removed on the emulator is gone.
    gone_at = out.index("carol is gone:")
    readers = out[readers_at:gone_at]
    assert all(login in readers for login in ("alice", "bob", "carol", "dave", "octo-admin"))
    assert "carol" not in out[gone_at + len("carol is gone:") : operations_at]
    assert "alice" in out[gone_at:operations_at]
    # Bulk operations: merges on all four hosts, then a close that the archived repo refuses
    # (or, should the repo sync learn of the archive first, skips): READONLY either way, and
    # the other hosts' open pull requests closed.
    lines = out[operations_at:].splitlines()
    merged = {line.split()[1].split(".")[0] for line in lines if "done     merge" in line}
    assert merged == {"github", "gitlab", "gitea", "bitbucket"}
    closed = {line.split()[1].split(".")[0] for line in lines if "done     close" in line}
    assert closed == {"gitlab", "gitea", "bitbucket"}
    [learned] = [line for line in lines if "legacy-api: learned it is archived from" in line]
    assert learned.endswith("its changesets are READONLY"), learned
    assert db.exists()


# --- API tokens -------------------------------------------------------------------------------


def test_tokens_are_shown_once_kept_hashed_and_revoked(
    in_process: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = in_process / "tokens.db"
    db = ["--database", f"sqlite:///{path}"]

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([*args, *db])
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return code, out, err

    code, out, err = cli("tokens", "create", "ci", "--scope", "write")
    token = out.strip()  # stdout is the token alone, for scripts
    assert code == 0 and token.startswith("rut_") and len(token) >= 40
    assert "shown once" in err and token not in err
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT name, scope, token_sha256 FROM api_tokens").fetchall()
    assert [(n, s) for n, s, _ in stored] == [("ci", "write")] and token not in str(stored)

    code, out, _ = cli("tokens", "list")
    assert code == 0 and out.split()[3:5] == ["ci", "write"] and token not in out
    code, _, err = cli("tokens", "create", "ci")
    assert code == 2 and "exists already" in err
    code, _, err = cli("tokens", "create", "no spaces")
    assert code == 2 and "invalid" in err
    with pytest.raises(SystemExit) as exit_:
        main(["tokens", "create", "x", "--scope", "admin", *db])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err

    code, out, _ = cli("tokens", "revoke", "ci")
    assert code == 0 and "revoked token 'ci'" in out
    assert "(none)" in cli("tokens", "list")[1]
    code, _, err = cli("tokens", "revoke", "ci")
    assert code == 2 and "no token named 'ci'" in err


def test_serve_refuses_a_non_loopback_address_while_no_token_exists(
    in_process: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before it listens: nothing is bound to 0.0.0.0 here."""
    config = {
        "database": f"sqlite:///{in_process}/serve.db",
        "api": {"host": "0.0.0.0", "port": 0},
        "external_services": [
            {"name": "gh", "kind": "github", "url": "http://127.0.0.1:9/github", "orgs": ["a"]}
        ],
    }
    (in_process / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["serve", "--config", "c.yaml"]) == 2
    err = capsys.readouterr().err
    assert "refusing to serve the API on 0.0.0.0" in err
    assert "tokens create" in err and "Traceback" not in err
