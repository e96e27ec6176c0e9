"""Parse and validate a batch spec (YAML), like ``config.py`` does the config: every error
names the field it is about (``changes.0.replace.regex: ...``). See docs/specs.md.

    name: upgrade-ci
    description: Use actions/checkout v4
    on:
      repos: ["github.example/acme/*"]
      exclude: ["*/legacy-*"]
      skip_archived: true   # default
      skip_forks: false     # default
    changes:
      - path: .github/workflows/ci.yml
        replace: {regex: 'actions/checkout@v3', replacement: 'actions/checkout@v4'}
      - path: OWNERS
        write: "platform-team\\n"
      - path: .travis.yml
        delete: true
    changeset:
      title: Upgrade actions/checkout to v4
      body: Automated by repo-updater.
      branch: batch/upgrade-ci
      commit_message: Upgrade actions/checkout to v4
      published: draft      # true | false | draft
      on_removed: close     # close | detach
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from repo_updater.core.domain import MAX_BATCH_CHANGE_NAME
from repo_updater.core.operations import MAX_BODY, MAX_TITLE
from repo_updater.core.specs import (
    ChangesetTemplate,
    Delete,
    FileChange,
    On,
    OnRemoved,
    Published,
    Replace,
    Spec,
    Write,
)

MAX_FILE = 1_000_000  # characters written by one spec (all its files)
_BRANCH = re.compile(r"^(?!/)(?!.*//)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/\-]+(?<![/.])$")


class SpecError(ValueError):
    """The spec is not valid; the message names each bad field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _On(_Model):
    repos: list[str] = Field(min_length=1)
    exclude: list[str] = []
    skip_archived: bool = True
    skip_forks: bool = False

    @field_validator("repos", "exclude")
    @classmethod
    def _globs(cls, v: list[str]) -> list[str]:
        if any(not g.strip() for g in v):
            raise ValueError("a glob must not be empty")
        return v


class _Replace(_Model):
    regex: str = Field(min_length=1)
    replacement: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return v

    @model_validator(mode="after")
    def _replacement_fits(self) -> _Replace:
        try:
            re.compile(self.regex).sub(self.replacement, "")
            re.sub(self.regex, self.replacement, "x")
        except (re.error, IndexError) as exc:
            raise ValueError(f"replacement: {exc}") from None
        return self


class _Change(_Model):
    path: str = Field(min_length=1, max_length=1000)
    write: str | None = Field(default=None, max_length=MAX_FILE)
    replace: _Replace | None = None
    delete: Literal[True] | None = None

    @field_validator("path")
    @classmethod
    def _relative(cls, v: str) -> str:
        parts = v.split("/")
        if v.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in v:
            raise ValueError("must be a relative file path without '.', '..' or empty parts")
        return v

    @model_validator(mode="after")
    def _one_action(self) -> _Change:
        given = [n for n in ("write", "replace", "delete") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of write, replace, delete (got {given or 'none'})")
        return self

    def to_core(self) -> FileChange:
        if self.write is not None:
            return Write(self.write)
        if self.replace is not None:
            return Replace(self.replace.regex, self.replace.replacement)
        return Delete()


class _Changeset(_Model):
    title: str = Field(min_length=1, max_length=MAX_TITLE)
    body: str = Field(default="", max_length=MAX_BODY)
    branch: str = Field(min_length=1, max_length=200)
    commit_message: str = Field(min_length=1, max_length=MAX_BODY)
    published: bool | Literal["draft"] = True
    on_removed: OnRemoved = OnRemoved.CLOSE

    @field_validator("title")
    @classmethod
    def _title(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise ValueError("must not be blank")
        return v

    @field_validator("branch")
    @classmethod
    def _branch(cls, v: str) -> str:
        if not _BRANCH.match(v) or v.endswith(".lock"):
            raise ValueError("not a valid branch name (letters, digits, '.', '_', '-', '/')")
        return v

    @field_validator("published", mode="before")
    @classmethod
    def _published(cls, v: Any) -> Any:
        if v not in (True, False, "draft"):
            raise ValueError("must be true, false or draft")
        return v


class _Spec(_Model):
    name: str = Field(min_length=1, max_length=MAX_BATCH_CHANGE_NAME, pattern=r"^[\w.\-]+$")
    description: str = Field(default="", max_length=MAX_BODY)
    on: _On
    changes: list[_Change] = Field(min_length=1, max_length=100)
    changeset: _Changeset

    @model_validator(mode="after")
    def _size(self) -> _Spec:
        written = sum(len(c.write or "") for c in self.changes)
        if written > MAX_FILE:
            raise ValueError(f"changes: at most {MAX_FILE} characters written in all")
        return self

    def to_core(self) -> Spec:
        published = {True: Published.TRUE, False: Published.FALSE, "draft": Published.DRAFT}
        return Spec(
            name=self.name,
            description=self.description,
            on=On(
                repos=tuple(self.on.repos),
                exclude=tuple(self.on.exclude),
                skip_archived=self.on.skip_archived,
                skip_forks=self.on.skip_forks,
            ),
            changes=tuple((c.path, c.to_core()) for c in self.changes),
            changeset=ChangesetTemplate(
                title=self.changeset.title,
                body=self.changeset.body,
                branch=self.changeset.branch,
                commit_message=self.changeset.commit_message,
                published=published[self.changeset.published],
            ),
            on_removed=self.changeset.on_removed,
        )


def _format(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-")) or "(top)"
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return "invalid batch spec:\n  " + "\n  ".join(lines)


def parse_spec(data: Any) -> Spec:
    """A spec from parsed YAML/JSON data; raises ``SpecError`` naming the bad fields."""
    if not isinstance(data, dict):
        raise SpecError("invalid batch spec: (top): must be a mapping with name, on, changes "
                        "and changeset")  # fmt: skip
    try:
        return _Spec.model_validate(data).to_core()
    except ValidationError as exc:
        raise SpecError(_format(exc)) from None


def load_spec(text: str) -> Spec:
    """A spec from YAML text; raises ``SpecError``."""
    try:
        # YAML 1.1 reads a bare ``on`` key as the boolean True: take it back.
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid batch spec: not YAML: {exc}") from None
    if isinstance(data, dict) and True in data and "on" not in data:
        data["on"] = data.pop(True)
    return parse_spec(data)


def spec_to_json(spec: Spec) -> dict[str, Any]:
    """The spec as stored (parse_spec reads it back)."""
    changes: list[dict[str, Any]] = []
    for path, change in spec.changes:
        if isinstance(change, Write):
            changes.append({"path": path, "write": change.content})
        elif isinstance(change, Replace):
            rep = {"regex": change.pattern, "replacement": change.replacement}
            changes.append({"path": path, "replace": rep})
        else:
            changes.append({"path": path, "delete": True})
    value = spec.changeset.published
    published: bool | str = "draft" if value is Published.DRAFT else value is Published.TRUE
    return {
        "name": spec.name,
        "description": spec.description,
        "on": {
            "repos": list(spec.on.repos),
            "exclude": list(spec.on.exclude),
            "skip_archived": spec.on.skip_archived,
            "skip_forks": spec.on.skip_forks,
        },
        "changes": changes,
        "changeset": {
            "title": spec.changeset.title,
            "body": spec.changeset.body,
            "branch": spec.changeset.branch,
            "commit_message": spec.changeset.commit_message,
            "published": published,
            "on_removed": spec.on_removed.value,
        },
    }
