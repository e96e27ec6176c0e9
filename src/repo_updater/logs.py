"""Log lines: text for a person (the default) or one JSON object per line for a log pipeline
(``log_format: json`` in the config, or ``--log-format json``).

A JSON line has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message`` (the formatted
message, as in text), ``exc`` with the traceback when there is one, and any ``extra=`` fields
a call passes. Secrets never reach a log message in the first place (the sources redact)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY = ("httpx", "alembic")  # their INFO lines are one per request or migration

# The attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so that configuring again replaces it and nothing else."""


def configure(fmt: LogFormat = "text", *, verbose: bool = False) -> None:
    """(Re)configure the root logger: stderr, one line per record, in ``fmt``. Like
    ``logging.basicConfig``, it leaves a root logger that someone else set up (a test
    runner's capture) alone."""
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h, _Handler)]
    if len(ours) != len(root.handlers):
        return
    for old in ours:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
