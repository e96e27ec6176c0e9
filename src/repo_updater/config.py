"""Configuration: a YAML file validated into typed values. Pure: the environment is passed in.

Example::

    database: sqlite:///repo-updater.db
    repo_sync_interval: 60          # seconds, default for every service
    api: {host: 127.0.0.1, port: 7800}
    external_services:
      - name: github-main
        kind: github
        url: https://api.github.com
        token_env: GITHUB_TOKEN     # the token itself never goes in the file
        orgs: [acme]
        repos: [acme-labs/tools]
        exclude: ["acme/archive-*"]
        sync_interval: 300
        write_limits: {per_minute: 80, per_hour: 500}   # closes, merges, comments...

Any error names the field (``external_services.0.url: ...``) and nothing starts.
"""

from __future__ import annotations

import hashlib
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
    orgs: tuple[str, ...] = ()  # GitHub/Gitea orgs or users, GitLab groups, Bitbucket projects
    repos: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sync_interval: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] | None = None
    name_prefix: str | None = None
    write_limits: WriteLimitsConfig = WriteLimitsConfig()

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
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        if parts.username or parts.password:
            raise ValueError("must not contain credentials; use token_env")
        return normalise_base_url(v)

    @field_validator("token_env")
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
        data = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 7800


class Config(_Strict):
    database: str = DEFAULT_DATABASE
    repo_sync_interval: Annotated[float, Field(gt=0, le=7 * 24 * 3600)] = 60.0
    changeset_poll_interval: Annotated[float, Field(gt=0, le=3600)] = 5.0
    changeset_batch_size: Annotated[int, Field(ge=1, le=1000)] = 200
    api: ApiConfig = ApiConfig()
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
