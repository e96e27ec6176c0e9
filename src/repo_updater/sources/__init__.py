"""Sources: one module per code host, each a ``RepoSource`` and a ``ChangesetWriter`` (its
writes in ``<host>_writes``) over the shared HTTP client. ``build_source`` picks the module for a
configured external service from the registry below; modules are imported when first used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, Unpack, cast

import httpx

from repo_updater.config import ServiceConfig, token_for
from repo_updater.core.domain import HostKind
from repo_updater.core.ports import PermissionSource, RequestCounter, WritingSource
from repo_updater.sources.http import RetryPolicy
from repo_updater.sources.rest import SourceOptions


class SourceFactory(Protocol):
    def __call__(self, **options: Unpack[SourceOptions]) -> WritingSource: ...


# Host kind -> "module:class" of its source.
REGISTRY: dict[HostKind, str] = {
    HostKind.GITHUB: "repo_updater.sources.github:GitHubSource",
    HostKind.GITLAB: "repo_updater.sources.gitlab:GitLabSource",
    HostKind.GITEA: "repo_updater.sources.gitea:GiteaSource",
    HostKind.BITBUCKET_SERVER: "repo_updater.sources.bitbucket:BitbucketServerSource",
}


def source_class(kind: HostKind) -> SourceFactory:
    module, _, name = REGISTRY[kind].partition(":")
    return cast(SourceFactory, getattr(importlib.import_module(module), name))


def build_source(
    svc: ServiceConfig,
    env: Mapping[str, str],
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
    counter: RequestCounter | None = None,
) -> WritingSource:
    """The source for one configured external service (token read from ``env``)."""
    return source_class(svc.kind)(
        base_url=svc.url,
        token=token_for(svc, env),
        selection=svc.selection,
        name_prefix=svc.prefix,
        transport=transport,
        retry=retry,
        counter=counter,
        list_concurrency=svc.list_concurrency,
    )


if TYPE_CHECKING:  # mypy checks that every source that writes implements the protocols
    from repo_updater.sources.bitbucket import BitbucketServerSource
    from repo_updater.sources.gitea import GiteaSource
    from repo_updater.sources.github import GitHubSource
    from repo_updater.sources.gitlab import GitLabSource

    def _conforms(
        gh: GitHubSource, gl: GitLabSource, gt: GiteaSource, bb: BitbucketServerSource
    ) -> list[WritingSource]:
        return [gh, gl, gt, bb]

    def _reads_permissions(
        gh: GitHubSource, gl: GitLabSource, gt: GiteaSource, bb: BitbucketServerSource
    ) -> list[PermissionSource]:
        return [gh, gl, gt, bb]
