"""Configuration: a YAML file validated into typed values. Pure: the environment is passed in.

Example::

    database: sqlite:///repo-updater.db
    repo_sync_interval: 60          # seconds, default for every service
    events_retention_days: 30       # serve deletes older events
    log_format: text                # or json: one JSON object per log line
    api:
      host: 127.0.0.1
      port: 7800
      open_reads: true              # default on loopback; reads need a token elsewhere
      allowed_hosts: []             # extra Host names to answer to (a reverse proxy's)
      forced_sync_min_gap: 10       # seconds between forced syncs of one service or changeset
      pool_size: 5                  # the API's own database connections
      header_timeout: 15            # seconds for a client to send its request head
    permissions:                    # who can read private repos
      refresh_interval: 86400
      refresh_jitter: 0.1
    external_services:
      - name: github-main
        kind: github
        url: https://api.github.com
        token_env: GITHUB_TOKEN     # the token itself never goes in the file
        webhook_secret_env: GITHUB_WEBHOOK_SECRET   # POST /webhooks/github-main verifies with it
        orgs: [acme]
        repos: [acme-labs/tools]
        exclude: ["acme/archive-*"]
        sync_interval: 300
        write_limits: {per_minute: 80, per_hour: 500}   # closes, merges, comments...

Any error names the field (``external_services.0.url: ...``) and nothing starts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from repo_updater.core.domain import HostKind
from repo_updater.core.pacing import GITHUB_WRITE_LIMITS, OTHER_WRITE_LIMITS, WriteLimit
from repo_updater.core.selection import Selection, default_name_prefix, normalise_base_url

# The embedded default: a SQLite file in the current directory.
DEFAULT_DATABASE = "sqlite:///repo-updater.db"


class ConfigError(ValueError):
    """Invalid configuration. The message names each bad field; it never contains secrets."""


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _valid_path(value: str, *, allow_empty: bool = False) -> bool:
    """No empty, ``.`` or ``..`` segment (a leading or trailing ``/`` is fine), no backslash
    or control character: a name that cannot walk out of the API path it is put in."""
    stripped = value.strip("/")
    if not stripped:
        return allow_empty
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    return all(seg not in ("", ".", "..") for seg in stripped.split("/"))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class WriteLimitsConfig(_Strict):
    """A service's content-creation limits: writes (close, merge, comment...) per minute and
    per hour, shared by every worker. Unset: GitHub's documented 80 / 500, else 120 / 3000."""

    per_minute: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    per_hour: Annotated[int, Field(ge=1, le=100_000_000)] | None = None

    def limits(self, kind: HostKind) -> tuple[WriteLimit, ...]:
        minute, hour = GITHUB_WRITE_LIMITS if kind is HostKind.GITHUB else OTHER_WRITE_LIMITS
        return (
            WriteLimit(self.per_minute, 60) if self.per_minute is not None else minute,
            WriteLimit(self.per_hour, 3600) if self.per_hour is not None else hour,
        )


class ServiceConfig(_Strict):
    name: str
    kind: HostKind
    url: str
    token_env: str | None = None
    # The environment variable holding the secret set on this host's webhook; unset: the
    # service's webhook route refuses every delivery (401).
    webhook_secret_env: str | None = None
    orgs: tuple[str, ...] = ()  # GitHub/Gitea orgs or users, GitLab groups, Bitbucket projects
    repos: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sync_interval: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None
    name_prefix: str | None = None
    write_limits: WriteLimitsConfig = WriteLimitsConfig()
    # Listing pages fetched at once from this host (halved on each rate limit it answers).
    list_concurrency: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-100 letters, digits, '.', '_' or '-'")
        return v

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        if "@" in parts.netloc:
            raise ValueError("must not contain credentials; use token_env")
        # A query or fragment has no place in a base URL, and would show (with any token in
        # it) in ``services list``, the API and the logs.
        if parts.query or parts.fragment or v.rstrip().endswith(("?", "#")):
            raise ValueError("must not have a query or fragment (credentials go in token_env)")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("has an invalid port (must be 1-65535)") from None
        if port == 0:
            raise ValueError("has an invalid port (must be 1-65535)")
        if not _valid_path(parts.path, allow_empty=True):
            raise ValueError("path must not contain '.', '..' or empty segments")
        return normalise_base_url(v)

    @field_validator("token_env", "webhook_secret_env")
    @classmethod
    def _check_env(cls, v: str | None) -> str | None:
        if v is not None and not _ENV_RE.match(v):
            raise ValueError("must be the name of an environment variable")
        return v

    @field_validator("repos")
    @classmethod
    def _check_repos(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            if "/" not in item.strip("/"):
                raise ValueError(f"{item!r} is not a full name like 'owner/name'")
            # Each entry becomes part of a request path sent with the token: ``..`` or an
            # empty segment would reach another endpoint (``../../_admin/...``).
            if not _valid_path(item):
                raise ValueError(f"{item!r} must not contain '.', '..' or empty segments")
        return v

    @field_validator("orgs")
    @classmethod
    def _check_orgs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for item in v:
            if not _valid_path(item):
                raise ValueError(f"{item!r} must not be empty or contain '.', '..' or '//'")
        return v

    @model_validator(mode="after")
    def _check_selection(self) -> ServiceConfig:
        if not self.orgs and not self.repos:
            raise ValueError("selects no repositories: give orgs and/or repos")
        return self

    @property
    def selection(self) -> Selection:
        return Selection(owners=self.orgs, repos=self.repos, exclude=self.exclude)

    @property
    def prefix(self) -> str:
        return self.name_prefix if self.name_prefix is not None else default_name_prefix(self.url)

    def config_hash(self) -> str:
        # Neither the webhook secret's variable nor how fast the listing goes changes what is
        # listed: the hash (and a service's registration) stays the same whatever they are.
        dumped = self.model_dump(mode="json", exclude={"webhook_secret_env", "list_concurrency"})
        data = json.dumps(dumped, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (names are not resolved, except
    ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiConfig(_Strict):
    """The HTTP API. Writes always need a write token. Reads are open without a token only
    on a loopback address, and there only while ``open_reads`` is true (its default there)."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 7800
    # Seconds a connection may take to send a complete request head (a slowloris holding
    # connections open), and may idle between keep-alive requests.
    header_timeout: Annotated[float, Field(gt=0, le=3600)] = 15.0
    open_reads: bool | None = None  # None: true on loopback, false elsewhere
    # Extra Host header values to answer to (e.g. the name a reverse proxy forwards).
    allowed_hosts: tuple[Annotated[str, Field(min_length=1, max_length=300)], ...] = ()
    # A forced sync (API) of a service or changeset runs at most once per this many seconds.
    forced_sync_min_gap: Annotated[float, Field(ge=0, le=24 * 3600)] = 10.0
    # The API's own database connections, apart from the syncers' (a busy API never starves
    # them); requests beyond it wait, then answer 503.
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5

    @model_validator(mode="after")
    def _check_open_reads(self) -> ApiConfig:
        if self.open_reads and not is_loopback(self.host):
            raise ValueError(
                f"open_reads: reads can be open only on a loopback address, not {self.host!r}"
            )
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def reads_open(self) -> bool:
        return self.loopback and self.open_reads is not False


class PermissionsConfig(_Strict):
    """The permissions syncer: who can read each private repository."""

    enabled: bool = True
    # The longest a private repo's permissions go without a refresh (seconds; default 24 h).
    refresh_interval: Annotated[float, Field(gt=0, le=30 * 24 * 3600)] = 24 * 3600.0
    # Each repo is refreshed up to this fraction of the interval earlier, drawn per repo, so
    # that repos synced together do not all come back in one burst.
    refresh_jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    poll_interval: Annotated[float, Field(gt=0, le=3600)] = 10.0
    batch_size: Annotated[int, Field(ge=1, le=1000)] = 100


class Config(_Strict):
    database: str = DEFAULT_DATABASE
    repo_sync_interval: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 60.0
    changeset_poll_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    changeset_batch_size: Annotated[int, Field(ge=1, le=1000)] = 200
    # How long a worker's claim on a service's repo sync (renewed every third of it while the
    # sync runs) and on a changeset round survives the worker: a killed worker's work is
    # picked up by another after at most this long.
    repo_sync_lease: Annotated[float, Field(ge=3, le=3600)] = 120.0
    changeset_lease: Annotated[float, Field(ge=3, le=3600)] = 300.0
    # Stored webhook deliveries: how often a worker looks for ones another process stored
    # (its own are processed at once), and how long its claim on a batch survives it.
    webhook_poll_interval: Annotated[float, Field(gt=0, le=3600)] = 1.0
    webhook_lease: Annotated[float, Field(ge=3, le=3600)] = 60.0
    # Events (the outbox) older than this are deleted by ``serve``, in batches, hourly.
    events_retention_days: Annotated[float, Field(gt=0, le=36500)] = 30.0
    # Log lines on stderr: text for a person, or one JSON object per line (``--log-format``
    # on the command line wins).
    log_format: Literal["text", "json"] = "text"
    api: ApiConfig = ApiConfig()
    permissions: PermissionsConfig = PermissionsConfig()
    external_services: tuple[ServiceConfig, ...] = ()
    kind: Literal["repo-updater/v1"] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for i, svc in enumerate(self.external_services):
            if svc.name in seen:
                raise ValueError(f"external_services.{i}.name: duplicate name {svc.name!r}")
            seen.add(svc.name)
        return self

    def interval_for(self, svc: ServiceConfig) -> float:
        return svc.sync_interval if svc.sync_interval is not None else self.repo_sync_interval


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_config(data: Any, env: Mapping[str, str]) -> Config:
    """Validate parsed YAML; check that every ``token_env`` is set in ``env``."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("invalid config: the top level must be a mapping")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format(exc)) from None
    missing = [
        f"external_services.{i}.token_env: environment variable {svc.token_env} is not set"
        for i, svc in enumerate(config.external_services)
        if svc.token_env and not env.get(svc.token_env)
    ] + [
        f"external_services.{i}.webhook_secret_env: environment variable "
        f"{svc.webhook_secret_env} is not set"
        for i, svc in enumerate(config.external_services)
        if svc.webhook_secret_env and not env.get(svc.webhook_secret_env)
    ]
    if missing:
        raise ConfigError("invalid config:\n  " + "\n  ".join(missing))
    return config


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from None
    return parse_config(data, env)


def token_for(svc: ServiceConfig, env: Mapping[str, str]) -> str | None:
    return env.get(svc.token_env) if svc.token_env else None


def webhook_secret_for(svc: ServiceConfig, env: Mapping[str, str]) -> str | None:
    return env.get(svc.webhook_secret_env) if svc.webhook_secret_env else None
