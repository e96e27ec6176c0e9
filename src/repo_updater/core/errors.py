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


class SourceError(Exception):
    """Base class for code-host failures."""


class RateLimited(SourceError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
