"""How every CLI list prints: ``--output table|json|ndjson|csv`` (``--json`` is ``--output
json``), relative times in tables, and a quiet exit when the reader goes away (``| head``).

A command adds the option with ``output_option(parser)`` and prints with
``emit(rows, columns, args.output)``: rows are dataclasses or dicts. Tables show ``columns``
(datetimes as "3 min ago"); json, ndjson and csv carry every field (datetimes in ISO 8601 UTC),
for scripts. Imports nothing heavy: the parser module imports this.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

FORMATS = ("table", "json", "ndjson", "csv")
BROKEN_PIPE_EXIT = 141  # as a shell reports a process ended by SIGPIPE (128 + 13)


def output_option(p: argparse.ArgumentParser) -> None:
    """``--output FORMAT`` and its alias ``--json``."""
    p.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="table",
        help="table (for people, times relative), json (one array), ndjson (one object a "
        "line), csv (a header line, then one row a line); default: table",
    )
    p.add_argument(
        "--json",
        dest="output",
        action="store_const",
        const="json",
        help="the same as --output json",
    )


def relative(at: datetime | None, now: datetime | None = None) -> str:
    """``3 min ago``, ``in 2 h``, ``just now``; empty for None."""
    if at is None:
        return ""
    now = now or datetime.now(UTC)
    seconds = (now - at).total_seconds()
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    for size, unit in ((86400 * 365, "y"), (86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size:
            amount = f"{int(seconds // size)} {unit}"
            return f"in {amount}" if ahead else f"{amount} ago"
    return "just now"  # pragma: no cover - the loop always returns


def as_dict(row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}
    if isinstance(row, Mapping):
        return dict(row)
    raise TypeError(f"cannot print a {type(row).__name__}")


def _plain(value: Any) -> Any:
    """A JSON-ready value (enums by value, datetimes in ISO 8601, tuples as lists)."""
    from repo_updater.entrypoints.render import json_default

    return json.loads(json.dumps(value, default=json_default))


def _cell(value: Any, now: datetime) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return relative(value, now)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(_plain(value), separators=(",", ":"))
    return str(getattr(value, "value", value))


def table_lines(
    rows: Sequence[Any], columns: Sequence[str], now: datetime | None = None
) -> Iterator[str]:
    """The lines of a table (no trailing newlines): a header, then one line per row."""
    if not rows:
        yield "(none)"
        return
    now = now or datetime.now(UTC)
    cells = [[_cell(as_dict(r).get(c), now) for c in columns] for r in rows]
    heads = [c.upper() for c in columns]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(heads)]
    yield "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)).rstrip()
    for row in cells:
        yield "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()


def table(rows: Sequence[Any], columns: Sequence[str], now: datetime | None = None) -> str:
    return "\n".join(table_lines(rows, columns, now))


def emit(rows: Sequence[Any], columns: Sequence[str], fmt: str, *, header: bool = True) -> None:
    """Print ``rows`` in ``fmt`` on stdout (``header=False``: csv rows only, to follow on)."""
    # Written a line at a time: a reader that goes away (`| head`) is noticed at the next
    # write (one huge write can lose the error), and nothing more is formatted for nobody.
    out = sys.stdout
    if fmt == "table":
        for line in table_lines(rows, columns):
            out.write(line + "\n")
    elif fmt == "json":
        json.dump([_plain(as_dict(r)) for r in rows], out, indent=2)
        out.write("\n")
    elif fmt == "ndjson":
        emit_ndjson(rows)
    elif fmt == "csv":
        dicts = [_plain(as_dict(r)) for r in rows]
        fields = list(dicts[0]) if dicts else list(columns)
        writer = csv.writer(out, lineterminator="\n")
        if header:
            writer.writerow(fields)
        for d in dicts:
            writer.writerow([_csv_value(d.get(f)) for f in fields])
    else:  # argparse's choices keep this out
        raise ValueError(f"unknown output format {fmt!r}")
    out.flush()


def emit_ndjson(rows: Sequence[Any]) -> None:
    for r in rows:
        sys.stdout.write(json.dumps(_plain(as_dict(r)), separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (``| head``): point stdout at /dev/null so the
    interpreter's final flush cannot fail again, and return the exit status to end with."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture)
        pass
    finally:
        os.close(devnull)
    return BROKEN_PIPE_EXIT
