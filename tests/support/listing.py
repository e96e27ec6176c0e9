"""A fake code host listing for repo-syncer tests: pages of SourcedRepo, optionally failing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from repo_updater.core.domain import ChangesetRef, ChangesetSnapshot, HostKind, SourcedRepo
from repo_updater.core.errors import HostError


def repo(n: int, *, name: str | None = None, archived: bool = False, **kw: object) -> SourcedRepo:
    return SourcedRepo(
        external_id=str(n),
        name=name or f"acme/repo-{n}",
        url=f"https://example.test/{name or f'acme/repo-{n}'}",
        archived=archived,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class ListingSource:
    """Yields ``pages``; if ``fail_after_pages`` is set, raises HostError after that many."""

    pages: list[list[SourcedRepo]] = field(default_factory=list)
    fail_after_pages: int | None = None
    kind: HostKind = HostKind.GITHUB
    host_url: str = "https://example.test"
    name_prefix: str = "example.test"
    later: list[list[list[SourcedRepo]]] = field(default_factory=list)  # pages of later calls
    calls: int = 0

    @classmethod
    def of(cls, repos: Sequence[SourcedRepo], page_size: int = 2) -> ListingSource:
        return cls(pages=[list(repos[i : i + page_size]) for i in range(0, len(repos), page_size)])

    async def list_repos(self) -> AsyncIterator[Sequence[SourcedRepo]]:
        self.calls += 1
        pages = self.pages
        if self.calls > 1 and self.later:
            pages = self.later[min(self.calls - 2, len(self.later) - 1)]
        for i, page in enumerate(pages):
            if self.fail_after_pages is not None and i >= self.fail_after_pages:
                raise HostError("GET /orgs/acme/repos?page=2: HTTP 502")
            yield page

    async def load_changesets(self, refs: Sequence[ChangesetRef]) -> list[ChangesetSnapshot]:
        raise NotImplementedError("listing-only fake")

    async def aclose(self) -> None:
        return None
