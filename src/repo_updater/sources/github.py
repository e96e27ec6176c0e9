"""GitHub source: lists repositories over REST, loads pull requests over GraphQL in batches;
its writes are in ``github_writes``.

Listing remembers each page's ``ETag`` so that an unchanged page costs a ``304`` (which GitHub
does not count against the rate limit) and no parsing. An owner that is not an organization is
listed with ``/users/{owner}/repos`` (public repositories only, by GitHub's design), except the
token's own user: ``/user/repos?affiliation=owner`` includes its private repositories.

Endpoints: ``https://api.github.com`` (REST) and ``https://api.github.com/graphql``. A base URL
ending in ``/api/v3`` is GitHub Enterprise Server, whose GraphQL endpoint is ``/api/graphql``.

GraphQL rate limits (``github_ratelimit``): GitHub answers an exhausted limit with HTTP 200 and
an error in the body; the source raises ``RateLimited`` then, and also before the next batch
when ``rateLimit.remaining`` says it would not fit, keeping what it loaded so far.
"""

from __future__ import annotations

import functools
import json
import logging
import time
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
from repo_updater.core.selection import normalise_base_url
from repo_updater.sources.common import deleted
from repo_updater.sources.github_files import GitHubFiles
from repo_updater.sources.github_graphql import (
    alias_failures,
    build_query,
    repo_missing,
    snapshot_from_node,
)
from repo_updater.sources.github_ratelimit import GraphQLBudget, rate_limit_error
from repo_updater.sources.github_writes import GitHubWrites, classify_422
from repo_updater.sources.http import (
    HostClient,
    page_number,
    parse_links,
    response_message,
    retry_after_seconds,
)
from repo_updater.sources.paging import Pacer, Page, ordered_pages
from repo_updater.sources.permissions import GitHubPermissions
from repo_updater.sources.rest import RestSource, SourceOptions

log = logging.getLogger(__name__)

PER_PAGE = 100
_ARCHIVED = "archived so is read-only"
GHES_REST_SUFFIX = "/api/v3"


@dataclass(slots=True)
class _CachedPage:
    """A listing page as last seen, kept compressed (about 30 bytes a repo) so that the cache
    of a 100k-repo listing stays a few MB: memory stays flat in the size of the listing."""

    etag: str
    blob: bytes
    next_url: str | None
    last_url: str | None = None

    @classmethod
    def of(
        cls, etag: str, repos: list[SourcedRepo], next_url: str | None, last_url: str | None
    ) -> _CachedPage:
        rows = [
            [r.external_id, r.name, r.url, r.archived, r.fork, r.private, r.description]
            for r in repos
        ]
        blob = zlib.compress(json.dumps(rows, separators=(",", ":")).encode())
        return cls(etag, blob, next_url, last_url)

    @property
    def repos(self) -> list[SourcedRepo]:
        return [SourcedRepo(*row) for row in json.loads(zlib.decompress(self.blob))]


@dataclass(slots=True)
class _Listed:
    """A listing page: its repos (selection applied), and its ``next`` and ``last`` links."""

    repos: list[SourcedRepo]
    next_url: str | None
    last_url: str | None = None


class GitHubSource(GitHubPermissions, GitHubWrites, GitHubFiles, RestSource):
    kind = HostKind.GITHUB

    def __init__(
        self,
        *,
        batch_size: int = 50,
        rate_limit_reserve: int = 10,
        **options: Unpack[SourceOptions],
    ) -> None:
        """``rate_limit_reserve``: GraphQL points left unused for others sharing the token;
        the source backs off when the next batch would eat into them."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        base = normalise_base_url(options["base_url"])
        # GHES serves GraphQL beside REST (/api/graphql), not under it (/api/v3/graphql).
        if base.endswith(GHES_REST_SUFFIX):
            self.graphql_url = base[: -len(GHES_REST_SUFFIX)] + "/api/graphql"
        else:
            self.graphql_url = base + "/graphql"
        super().__init__(
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "repo-updater",
            },
            **options,
        )
        self.batch_size = batch_size
        self.budget = GraphQLBudget(reserve=max(0, rate_limit_reserve))
        self._pages: dict[str, _CachedPage] = {}
        self._viewer: str | None = None  # the token's login; "" once known to be none
        self.last_listing: Pacer | None = None  # the last listing's pace (limit, rate limits)

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
            return SourcedRepo(  # positional: once per listed repo, a quarter cheaper
                str(raw["id"]),  # external_id
                str(raw["full_name"]),  # name
                str(raw["html_url"]),  # url
                bool(raw.get("archived", False)),
                bool(raw.get("fork", False)),
                bool(raw.get("private", False)),
                raw.get("description") or "",
            )
        except KeyError as missing:
            raise HostError(f"{self.host_url}: repository without {missing}") from None

    async def _page(self, url: str) -> _Listed:
        """One listing page. A rate limit is raised at once: the caller's ``Pacer`` waits
        (and slows the whole listing down), not each request on its own."""
        cached = self._pages.get(url)
        headers = {"If-None-Match": cached.etag} if cached is not None else None
        data, response = await self.client.request_json(
            "GET", url, kind="list_repos", headers=headers, wait_rate_limits=False
        )
        if response.status_code == 304 and cached is not None:
            # A 304 that repeats the Link header tells where the listing goes now (a page
            # may have been added or removed behind this one); one without it, what we saw.
            if "link" in response.headers:
                links = parse_links(response.headers)
                return _Listed(cached.repos, links.get("next"), links.get("last"))
            return _Listed(cached.repos, cached.next_url, cached.last_url)
        if not isinstance(data, list):
            raise HostError(f"GET {self.client.redact(url)}: expected a list of repositories")
        repos = [r for r in map(self._sourced, data) if not self.selection.excluded(r.name)]
        links = parse_links(response.headers)
        listed = _Listed(repos, links.get("next"), links.get("last"))
        etag = response.headers.get("etag")
        if etag:
            self._pages[url] = _CachedPage.of(etag, repos, listed.next_url, listed.last_url)
        return listed

    async def _first_owner_page(self, owner: str, pacer: Pacer) -> _Listed:
        """Page 1 of an owner: as an organization, else as the token's user, else as another
        user. Oldest first (``sort=created&direction=asc``; GitHub's default is newest
        first): a new repository then changes only the last page, and every other page stays
        a ``304``."""
        order = f"sort=created&direction=asc&per_page={PER_PAGE}"
        org_url = f"/orgs/{quote(owner, safe='')}/repos?{order}"
        try:
            return await pacer.run(lambda: self._page(org_url))
        except NotFound:
            pass
        if owner.lower() == (await self._viewer_login()).lower():
            # /users/{u}/repos lists public repositories only, even the token owner's own.
            own_url = f"/user/repos?affiliation=owner&{order}"
            return await pacer.run(lambda: self._page(own_url))
        user_url = f"/users/{quote(owner, safe='')}/repos?{order}"
        try:
            return await pacer.run(lambda: self._page(user_url))
        except NotFound:
            raise NotFound(f"{self.host_url}: no organization or user {owner!r}") from None

    async def _viewer_login(self) -> str:
        """The login of the token's user, asked once; "" without one (no token, or a GitHub
        App installation token, which ``GET /user`` refuses)."""
        if self._viewer is None:
            try:
                data, _ = await self.client.get_json("/user", kind="get_viewer")
            except (Unauthorized, NotFound):
                data = None
            login = data.get("login") if isinstance(data, dict) else None
            self._viewer = login if isinstance(login, str) else ""
        return self._viewer

    async def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        """Each owner's pages in order, then the explicit repos. Pages 2..N of an owner are
        fetched concurrently by number, up to its ``Link: rel="last"`` (``sources.paging``);
        a host that sends no ``last`` (or pages by cursor) is followed ``next`` by ``next``."""
        pacer = self.last_listing = self._list_pacer()
        for owner in self.selection.owners:
            async for repos in self._owner_pages(owner, pacer):
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

    async def _owner_pages(self, owner: str, pacer: Pacer) -> AsyncIterator[list[SourcedRepo]]:
        first = await self._first_owner_page(owner, pacer)
        last = page_number(first.last_url)
        if first.last_url is None or last is None:
            yield first.repos
            next_url = first.next_url
            while next_url is not None:
                listed = await pacer.run(functools.partial(self._page, next_url))
                yield listed.repos
                next_url = listed.next_url
            return
        template = httpx.URL(first.last_url)

        async def fetch(n: int) -> Page[list[SourcedRepo]]:
            url = str(template.copy_set_param("page", n))
            listed = await self._page(url)
            following = page_number(listed.next_url)
            if listed.next_url is not None and following != n + 1:
                raise HostError(
                    f"GET {self.client.redact(url)}: the next page is "
                    f"{self.client.redact(listed.next_url)[:200]!r}, not page {n + 1}"
                )
            return Page(listed.repos, listed.next_url is not None, page_number(listed.last_url))

        head = Page(first.repos, first.next_url is not None, last)
        async for repos in ordered_pages(head, fetch, pacer):
            yield repos

    async def _single(self, full_name: str) -> tuple[list[SourcedRepo], None]:
        url = f"/repos/{quote(full_name, safe='/')}"
        cached = self._pages.get(url)
        headers = {"If-None-Match": cached.etag} if cached is not None else None
        data, response = await self.client.request_json(
            "GET", url, kind="get_repo", headers=headers
        )
        if response.status_code == 304 and cached is not None:
            return cached.repos, None
        repo = self._sourced(data)
        repos = [] if self.selection.excluded(repo.name) else [repo]
        etag = response.headers.get("etag")
        if etag:
            self._pages[url] = _CachedPage.of(etag, repos, None, None)
        return repos, None

    async def get_repo(self, external_id: str, name: str) -> SourcedRepo | None:
        """``GET /repositories/{id}`` (follows renames and transfers); None on 404."""
        try:
            data, _ = await self.client.get_json(
                f"/repositories/{quote(external_id, safe='')}", kind="get_repo"
            )
        except NotFound:
            return None
        return self._sourced(data)

    # --- changesets ------------------------------------------------------------------------

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        """Snapshots of ``refs``, in order. A ref whose repository or pull request GitHub
        answered with an error (e.g. ``FORBIDDEN`` under SAML enforcement, or a repository
        not found that the repo syncer still lists) is left out and logged, so one bad
        repository does not fail the others; the caller retries the missing ones. Rate limits
        raise ``RateLimited`` carrying what was loaded before; so does a budget too low for
        the next batch. When every ref failed, the first error is raised."""
        out: list[ChangesetSnapshot] = []
        failures: list[str] = []
        for start in range(0, len(refs), self.batch_size):
            wait = self.budget.wait_before_query(time.time())
            if wait is not None:
                raise RateLimited(
                    f"{self.graphql_url}: GraphQL rate limit nearly used up "
                    f"({self.budget.remaining} points left); waiting for the reset",
                    wait,
                    loaded=out,
                )
            try:
                batch = refs[start : start + self.batch_size]
                out.extend(await self._load_batch(batch, failures))
            except RateLimited as exc:
                raise RateLimited(str(exc), exc.retry_after, loaded=out) from None
        if refs and not out and failures:
            raise HostError(failures[0])
        return out

    async def _load_batch(
        self, refs: Sequence[ChangesetRef], failures: list[str]
    ) -> list[ChangesetSnapshot]:
        query, aliases = build_query(refs)
        where = self.graphql_url
        # A query reads only: a truncated answer is retried like a 5xx.
        body, response = await self.client.request_json(
            "POST", self.graphql_url, kind="graphql", retry_invalid=True, json={"query": query}
        )
        if not isinstance(body, dict):
            raise HostError(f"{where}: malformed response")
        # A rate limit comes as HTTP 200 with an error in the body, often without data.
        limited = rate_limit_error(body, response.headers, time.time())
        if limited is not None:
            text, wait = limited
            self.budget.exhausted(time.time() + wait)
            raise RateLimited(f"{where}: {self.client.redact(text)}", wait)
        data = body.get("data")
        self.budget.update(data, response.headers, time.time())
        failed, unreachable = alias_failures(
            body.get("errors"), aliases, where=where, redact=self.client.redact
        )
        if not isinstance(data, dict):
            raise HostError(f"{where}: response without data")
        snapshots = []
        failed_by_repo: dict[str, tuple[int, str]] = {}
        for ref, (repo_alias, pull_alias) in zip(refs, aliases, strict=True):
            error = failed.get((repo_alias, pull_alias)) or failed.get((repo_alias, ""))
            if error is None:
                repo_node = data.get(repo_alias)
                if not isinstance(repo_node, dict):
                    error = repo_missing(ref, unreachable.get(repo_alias))
                elif (node := repo_node.get(pull_alias)) is None:
                    snapshots.append(deleted(ref))  # the repository answered: no such PR
                    continue
                else:
                    try:
                        snapshots.append(snapshot_from_node(ref.changeset_id, node))
                        continue
                    except (KeyError, TypeError, ValueError, AttributeError) as exc:
                        error = f"malformed pull request #{ref.number}: {exc!r}"[:300]
            count, first = failed_by_repo.get(ref.repo_name, (0, error))
            failed_by_repo[ref.repo_name] = (count + 1, first)
        for repo_name, (count, error) in failed_by_repo.items():
            log.warning(
                "%s: could not load %d pull request(s) of %s, left for a retry: %s",
                where, count, repo_name, error,
            )  # fmt: skip
            failures.append(f"{where}: {repo_name}: {error}")
        return snapshots
