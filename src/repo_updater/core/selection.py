"""Which repositories an external service covers, and what the store calls them. Pure."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Selection:
    """Which repositories of a host a service covers.

    ``owners``: orgs (GitHub, Gitea), groups (GitLab), project keys (Bitbucket Server).
    ``repos``: explicit host-relative full names. ``exclude``: glob patterns on full names.
    """

    owners: tuple[str, ...] = ()
    repos: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def excluded(self, full_name: str) -> bool:
        if not self.exclude:  # the usual case, asked for every listed repo
            return False
        lowered = full_name.lower()
        return any(fnmatch.fnmatchcase(lowered, p.lower()) for p in self.exclude)

    def covers(self, full_name: str) -> bool:
        """Whether a listing of this selection yields the repo: under one of ``owners``
        (GitLab: subgroups too), or one of ``repos``, and not excluded (ignoring case)."""
        lowered = full_name.lower()
        if self.excluded(full_name):
            return False
        if any(lowered == r.strip("/").lower() for r in self.repos):
            return True
        return any(lowered.startswith(o.strip("/").lower() + "/") for o in self.owners)


def normalise_base_url(base_url: str) -> str:
    return base_url.rstrip("/")


def default_name_prefix(base_url: str) -> str:
    """``https://api.github.com`` -> ``github.com``; ``http://127.0.0.1:7700/github`` ->
    ``127.0.0.1:7700/github``; ``https://gitlab.example.com/`` -> ``gitlab.example.com``."""
    parts = urlsplit(base_url)
    host = parts.netloc
    if host == "api.github.com":
        host = "github.com"
    path = parts.path.rstrip("/")
    for suffix in ("/api/v4", "/api/v1", "/api/v3", "/rest/api/1.0"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{host}{path}"


def store_name(prefix: str, external_name: str) -> str:
    """The store's global name of a repository: ``{prefix}/{host-relative name}``."""
    return f"{prefix}/{external_name}" if prefix else external_name
