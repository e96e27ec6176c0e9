"""The code-host errors: every source maps its host's failures onto these, and nothing else
escapes a source. Messages never contain tokens.

::

    SourceError
    ├── RateLimited(retry_after)   429, or 403 with a rate-limit signal: wait, then retry
    ├── NotFound                   404: the repository or pull request is gone (or hidden)
    ├── RepoArchived               a write refused because the repository is read-only
    ├── Unauthorized               401: the token is missing, wrong or expired
    │   └── Forbidden              403 without a reason: writes check whether it is an archive
    ├── Conflict                   409: the write conflicts with what exists (a PR for that branch)
    └── HostError                  anything else: 5xx, timeouts, malformed or truncated answers
        └── Refused                another 4xx (405 not mergeable, 422 validation failed): the
                                   host understood and said no; the same request will not pass

Only ``HostError`` (not ``Refused``) is worth retrying at once; ``RateLimited`` after
``retry_after`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from repo_updater.core.domain import ChangesetSnapshot


class SourceError(Exception):
    """Base class for code-host failures."""


class RateLimited(SourceError):
    """Wait ``retry_after`` seconds before asking the host again. ``loaded``: the snapshots a
    ``load_changesets`` call got before the limit hit (the caller keeps them and hands the
    rest back for later)."""

    def __init__(
        self, message: str, retry_after: float, loaded: Sequence[ChangesetSnapshot] = ()
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.loaded = tuple(loaded)


class NotFound(SourceError):
    pass


class RepoArchived(SourceError):
    """A write was refused because the repository is archived (read-only)."""


class Unauthorized(SourceError):
    pass


class Forbidden(Unauthorized):
    """A 403 whose body does not say why. Writes check whether the repo is archived."""


class Conflict(SourceError):
    """409: the write conflicts with existing state (e.g. a pull request for that branch
    already exists). Not a ``HostError``, so the client does not retry it."""


class HostError(SourceError):
    """Anything else: 5xx, timeouts, malformed or truncated responses."""


class Refused(HostError):
    """A 4xx the other classes do not cover (405 "Pull Request is not mergeable", 422
    "Validation Failed"): the host understood the request and refused it. Retrying the same
    request does not help, so writers treat it as final."""


def reason(exc: BaseException) -> str:
    """A short, fixed label for why a sync failed (a metric label: never free text)."""
    for kind, label in _REASONS:
        if isinstance(exc, kind):
            return label
    return "internal"


# Most specific first: Forbidden is an Unauthorized, Refused a HostError.
_REASONS: tuple[tuple[type[SourceError], str], ...] = (
    (RateLimited, "rate_limited"),
    (NotFound, "not_found"),
    (RepoArchived, "archived"),
    (Forbidden, "forbidden"),
    (Unauthorized, "unauthorized"),
    (Conflict, "conflict"),
    (Refused, "refused"),
    (HostError, "host_error"),
    (SourceError, "host_error"),
)
REASONS = ("rate_limited", "not_found", "archived", "forbidden", "unauthorized", "conflict",
           "refused", "host_error", "internal")  # fmt: skip


# The longest cause an internal error message carries (a database's message can quote a whole
# row; a status line and a log line stay readable).
MAX_CAUSE = 200


def internal_error(exc: BaseException) -> str:
    """``internal error: <Type>: <cause>`` for a failure that is not a code host's
    (see :func:`describe`)."""
    return f"internal error: {describe(exc)}"


def describe(exc: BaseException) -> str:
    """``<Type>: <cause>`` of an exception, the cause cut to ``MAX_CAUSE`` characters.

    A database error (SQLAlchemy's ``DBAPIError``, recognised by its ``orig``: the driver's
    exception) names its cause, e.g. ``IntegrityError: UNIQUE constraint failed: index
    'repos_live_name_uq'`` or ``OperationalError: database is locked``: nothing the store holds
    is secret; so does an ``OSError`` (``[Errno 111] Connect call failed ('127.0.0.1', 5432)``).
    Anything else is a bug somewhere, perhaps in a library whose message could quote a request
    header: only its type is named (the log's debug level has the traceback)."""
    name = type(exc).__name__
    orig = getattr(exc, "orig", None)
    if orig is not None:
        return f"{name}: {_cause(orig)}"
    if isinstance(exc, OSError) and str(exc):
        return f"{name}: {_cause(exc)}"
    return name


def _cause(orig: object) -> str:
    text = str(orig).strip()
    # asyncpg, through SQLAlchemy's adapter: "<class 'asyncpg.exceptions.X'>: message".
    if text.startswith("<class '"):
        text = text.partition(">: ")[2] or text
    first = text.splitlines()[0] if text else type(orig).__name__
    return first if len(first) <= MAX_CAUSE else first[: MAX_CAUSE - 3] + "..."
