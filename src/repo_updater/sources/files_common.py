"""What the four hosts' file APIs (``<host>_files``) share: a repository's default branch out
of its JSON, base64 file content decoded as UTF-8 text, and reading paths one by one where a
missing file is ``None`` rather than an error."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from repo_updater.core.errors import HostError, NotFound

T = TypeVar("T")


def default_branch_in(data: object, field: str, repo_name: str, noun: str = "repository") -> str:
    """``data[field]`` as the default branch's name; a clear error when the host gives none."""
    branch = data.get(field) if isinstance(data, dict) else None
    if not isinstance(branch, str) or not branch:
        raise HostError(f"{repo_name}: the {noun} has no default branch")
    return branch


def decode_text(content: object, url: str) -> str:
    """A file's base64 ``content`` as UTF-8 text (specs change text files only)."""
    if content is None:
        raise HostError(f"GET {url}: not a UTF-8 text file")
    try:
        return base64.b64decode(str(content)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise HostError(f"GET {url}: not a UTF-8 text file") from None


async def read_each(
    paths: Sequence[str], read_one: Callable[[str], Awaitable[T]]
) -> dict[str, T | None]:
    """path -> ``read_one(path)``, or None where the host answers that the file is not there."""
    out: dict[str, T | None] = {}
    for path in paths:
        try:
            out[path] = await read_one(path)
        except NotFound:
            out[path] = None
    return out
