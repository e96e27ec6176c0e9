"""Pages a service listed unchanged before, so that a page seen again needs no store read
(issue 12, item 4).

After a page whose diff wrote nothing (every repo stored, linked and equal, no repeats), the
syncer remembers a digest of the page and its stored repo ids, under the service's repos
version (``store.repo_versions``). On a later sync, a page with the same digest whose ids the
listing has not yielded yet is unmodified without reading the store, as long as the version
did not move: any other write to those repos or their links (another service's sync, a
webhook, a refused write, the API) bumps it, and then the memo starts afresh.

One memo per service, rebuilt by each sync from the pages it meets (memory bounded by the
listing: 16 bytes and 8 bytes per repo), kept only after a complete listing.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from repo_updater.core.domain import SourcedRepo


def digest(page: Sequence[SourcedRepo], name_prefix: str) -> bytes:
    """A digest of everything of a (de-duplicated) page the diff reads, with the prefix that
    makes its store names."""
    h = hashlib.blake2b(digest_size=16)
    h.update(name_prefix.encode())
    for r in page:
        h.update(
            b"\x1e%s\x1f%s\x1f%s\x1f%d%d%d\x1f%s"
            % (
                r.external_id.encode(),
                r.name.encode(),
                r.url.encode(),
                r.archived,
                r.fork,
                r.private,
                r.description.encode(),
            )
        )
    return h.digest()


@dataclass(slots=True)
class PageMemo:
    """The unchanged pages of one service under one repos version."""

    version: int
    pages: dict[bytes, array[int]] = field(default_factory=dict)

    def remember(self, key: bytes, repo_ids: Sequence[int]) -> None:
        self.pages[key] = array("q", repo_ids)

    def lookup(self, key: bytes) -> array[int] | None:
        return self.pages.get(key)
