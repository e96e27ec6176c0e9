"""GitHub source: lists repositories over REST, loads pull requests over GraphQL in batches;
its writes are in ``github_writes``.

Listing remembers each page's ``ETag`` so that an unchanged page costs a ``304`` (which GitHub
does not count against the rate limit) and no parsing.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Unpack
from urllib.parse import quote

import httpx

from repo_updater.core.domain import (
    ChangesetRef,
    ChangesetSnapshot,
    HostKind,
    HostPullState,
    SourcedRepo,
)
from repo_updater.core.errors import (
    HostError,
    NotFound,
    RateLimited,
    RepoArchived,
    SourceError,
    Unauthorized,
)
from repo_updater.sources.github_graphql import build_query, snapshot_from_node
from repo_updater.sources.github_writes import GitHubWrites, classify_422
from repo_updater.sources.http import (
    HostClient,
    decode_json,
    parse_next_link,
    response_message,
    retry_after_seconds,
)
from repo_updater.sources.rest import RestSource, SourceOptions

log = logging.getLogger(__name__)

PER_PAGE = 100
_ARCHIVED = "archived so is read-only"


@dataclass(slots=True)
class _CachedPage:
    """A listing page as last seen, kept compressed (about 30 bytes a repo) so that the cache
    of a 100k-repo listing stays a few MB: memory stays flat in the size of the listing."""

    etag: str
    blob: bytes
    next_url: str | None

    @classmethod
    def of(cls, etag: str, repos: list[SourcedRepo], next_url: str | None) -> _CachedPage:
        rows = [
            [r.external_id, r.name, r.url, r.archived, r.fork, r.private, r.description]
            for r in repos
        ]
        return cls(etag, zlib.compress(json.dumps(rows, separators=(",", ":")).encode()), next_url)

    @property
    def repos(self) -> list[SourcedRepo]:
        return [SourcedRepo(*row) for row in json.loads(zlib.decompress(self.blob))]


class GitHubSource(GitHubWrites, RestSource):
    kind = HostKind.GITHUB

    def __init__(
        self,
        *,
        batch_size: int = 50,
        **options: Unpack[SourceOptions],
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        super().__init__(
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "repo-updater",
            },
            **options,
        )
        self.batch_size = batch_size
        self._pages: dict[str, _CachedPage] = {}

    @property
    def client(self) -> HostClient:
        return self._client

    # --- errors ----------------------------------------------------------------------------

    def _classify(self, response: httpx.Response) -> SourceError | None:
        request = response.request
        where = f"{request.method} {self.client.redact(str(request.url))}"
        status = response.status_code
        message = self.client.redact(response_message(response, limit=300))
        headers = response.headers
        if status in (403, 429):
            if headers.get("x-ratelimit-remaining") == "0":
                wait = retry_after_seconds(headers)
                return RateLimited(f"{where}: primary rate limit exhausted: {message}", wait)
            if "retry-after" in headers:
                wait = retry_after_seconds(headers)
                return RateLimited(f"{where}: rate limited: {message}", wait)
            if _ARCHIVED in message.lower():
                return RepoArchived(f"{where}: {message}")
            if "rate limit" in message.lower():
                # Secondary limit without Retry-After: GitHub asks for at least a minute.
                return RateLimited(f"{where}: rate limited: {message}", 60.0)
        if status == 401:
            return Unauthorized(f"{where}: 401 unauthorized (check the token): {message}")
        if status == 422:
            return classify_422(where, message, response)
        return None

    # --- repositories ----------------------------------------------------------------------

    def _sourced(self, raw: Any) -> SourcedRepo:
        if not isinstance(raw, dict):
            raise HostError(f"{self.host_url}: malformed repository in response")
        try:
            return SourcedRepo(
                external_id=str(raw["id"]),
                name=str(raw["full_name"]),
                url=str(raw["html_url"]),
                archived=bool(raw.get("archived", False)),
                fork=bool(raw.get("fork", False)),
                private=bool(raw.get("private", False)),
                description=raw.get("description") or "",
            )
        except KeyError as missing:
            raise HostError(f"{self.host_url}: repository without {missing}") from None

    async def _page(self, url: str) -> tuple[list[SourcedRepo], str | None]:
        """One listing page: its repos (selection applied) and the next page's URL."""
        cached = self._pages.get(url)
        headers = {"If-None-Match": cached.etag} if cached is not None else None
        response = await self.client.request("GET", url, kind="list_repos", headers=headers)
        if response.status_code == 304 and cached is not None:
            # A 304 that repeats the Link header tells where the listing goes now (a page
            # may have been added or removed behind this one); one without it, what we saw.
            if "link" in response.headers:
                return cached.repos, parse_next_link(response.headers)
            return cached.repos, cached.next_url
        data = decode_json(response, self.client.redact(url))
        if not isinstance(data, list):
            raise HostError(f"GET {self.client.redact(url)}: expected a list of repositories")
        repos = [r for r in map(self._sourced, data) if not self.selection.excluded(r.name)]
        next_url = parse_next_link(response.headers)
        etag = response.headers.get("etag")
        if etag:
            self._pages[url] = _CachedPage.of(etag, repos, next_url)
        return repos, next_url

    async def _first_owner_page(self, owner: str) -> tuple[list[SourcedRepo], str | None]:
        org_url = f"/orgs/{quote(owner, safe='')}/repos?per_page={PER_PAGE}"
        try:
            return await self._page(org_url)
        except NotFound:
            pass
        user_url = f"/users/{quote(owner, safe='')}/repos?per_page={PER_PAGE}"
        try:
            return await self._page(user_url)
        except NotFound:
            raise NotFound(f"{self.host_url}: no organization or user {owner!r}") from None

    async def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        for owner in self.selection.owners:
            repos, next_url = await self._first_owner_page(owner)
            yield repos
            while next_url is not None:
                repos, next_url = await self._page(next_url)
                yield repos
        for full_name in self.selection.repos:
            if self.selection.excluded(full_name):
                continue
            try:
                repos, _ = await self._single(full_name)
            except NotFound:
                log.warning("%s: repository %s not found; skipping", self.host_url, full_name)
                continue
            yield repos

    async def _single(self, full_name: str) -> tuple[list[SourcedRepo], None]:
        url = f"/repos/{quote(full_name, safe='/')}"
        cached = self._pages.get(url)
        headers = {"If-None-Match": cached.etag} if cached is not None else None
        response = await self.client.request("GET", url, kind="get_repo", headers=headers)
        if response.status_code == 304 and cached is not None:
            return cached.repos, None
        repo = self._sourced(decode_json(response, self.client.redact(url)))
        repos = [] if self.selection.excluded(repo.name) else [repo]
        etag = response.headers.get("etag")
        if etag:
            self._pages[url] = _CachedPage.of(etag, repos, None)
        return repos, None

    # --- changesets ------------------------------------------------------------------------

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        """Snapshots of ``refs``, in order. A ref whose repository or pull request GitHub
        answered with an error (e.g. ``FORBIDDEN`` under SAML enforcement) is left out and
        logged, so one bad repository does not fail the others; the caller retries the
        missing ones. Rate limits propagate, and so does the error when every ref failed."""
        out: list[ChangesetSnapshot] = []
        failures: list[str] = []
        for start in range(0, len(refs), self.batch_size):
            out.extend(await self._load_batch(refs[start : start + self.batch_size], failures))
        if refs and not out and failures:
            raise HostError(failures[0])
        return out

    async def _load_batch(
        self, refs: Sequence[ChangesetRef], failures: list[str]
    ) -> list[ChangesetSnapshot]:
        query, aliases = build_query(refs)
        response = await self.client.request(
            "POST", "/graphql", kind="graphql", json={"query": query}
        )
        body = decode_json(response, "/graphql")
        if not isinstance(body, dict):
            raise HostError(f"{self.host_url}/graphql: malformed response")
        failed = self._failed_aliases(body.get("errors"), aliases, response)
        data = body.get("data")
        if not isinstance(data, dict):
            raise HostError(f"{self.host_url}/graphql: response without data")
        snapshots = []
        failed_by_repo: dict[str, tuple[int, str]] = {}
        for ref, (repo_alias, pull_alias) in zip(refs, aliases, strict=True):
            error = failed.get((repo_alias, pull_alias)) or failed.get((repo_alias, ""))
            if error is None:
                repo_node = data.get(repo_alias)
                node = repo_node.get(pull_alias) if isinstance(repo_node, dict) else None
                if node is None:
                    snapshots.append(
                        ChangesetSnapshot(
                            changeset_id=ref.changeset_id,
                            number=ref.number,
                            state=HostPullState.DELETED,
                        )
                    )
                    continue
                try:
                    snapshots.append(snapshot_from_node(ref.changeset_id, node))
                    continue
                except (KeyError, TypeError, ValueError) as exc:
                    error = f"malformed pull request #{ref.number}: {exc!r}"[:300]
            count, first = failed_by_repo.get(ref.repo_name, (0, error))
            failed_by_repo[ref.repo_name] = (count + 1, first)
        for repo_name, (count, error) in failed_by_repo.items():
            log.warning(
                "%s/graphql: could not load %d pull request(s) of %s, left for a retry: %s",
                self.host_url, count, repo_name, error,
            )  # fmt: skip
            failures.append(f"{self.host_url}/graphql: {repo_name}: {error}")
        return snapshots

    def _failed_aliases(
        self, errors: Any, aliases: Sequence[tuple[str, str]], response: httpx.Response
    ) -> dict[tuple[str, str], str]:
        """Map GraphQL ``errors`` onto the aliases they hit: ``(repo alias, pull alias)``, or
        ``(repo alias, "")`` for all of a repository. ``NOT_FOUND`` is no failure (null data
        means deleted). Raises ``RateLimited``, and ``HostError`` for an error that hit the
        whole query (no path into a repository alias)."""
        if errors is None:
            return {}
        if not isinstance(errors, list):
            raise HostError(f"{self.host_url}/graphql: malformed errors in response")
        repo_aliases = {repo for repo, _ in aliases}
        pull_aliases = set(aliases)
        failed: dict[tuple[str, str], str] = {}
        for error in errors:
            if not isinstance(error, dict) or error.get("type") == "NOT_FOUND":
                continue
            text = self.client.redact(str(error.get("message", error)))[:300]
            kind = error.get("type")
            if kind == "RATE_LIMITED":
                wait = retry_after_seconds(response.headers)
                raise RateLimited(f"{self.host_url}/graphql: {text}", wait)
            path = error.get("path")
            repo = path[0] if isinstance(path, list) and path else None
            if repo not in repo_aliases:
                raise HostError(f"{self.host_url}/graphql: {text}")
            assert isinstance(path, list) and isinstance(repo, str)
            pull = path[1] if len(path) > 1 and (repo, path[1]) in pull_aliases else ""
            label = f"{kind}: {text}" if isinstance(kind, str) else text
            failed.setdefault((repo, pull), label)
        return failed
