"""The emulator's file trees: per repository, content-addressed blobs, flat trees, commits and
branches (as much of git as the hosts' file and commit APIs show). Plain data and helpers.

Seeded repositories start with ``SEED_FILES`` on their default branch, so a batch spec such as
examples/upgrade-ci.yaml has something to change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

SEED_FILES: dict[str, str] = {
    "README.md": "# {name}\n\nA repository of the repo-updater emulator.\n",
    ".github/workflows/ci.yml": (
        "name: ci\n"
        "on: [push, pull_request]\n"
        "jobs:\n"
        "  test:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: actions/checkout@v3\n"
        "      - run: make test\n"
    ),
}


def sha(kind: str, text: str) -> str:
    return hashlib.sha1(f"{kind} {len(text)}\0{text}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Commit:
    sha: str
    tree: str
    parents: tuple[str, ...]
    message: str


@dataclass(slots=True)
class RepoGit:
    blobs: dict[str, str] = field(default_factory=dict)
    trees: dict[str, dict[str, str]] = field(default_factory=dict)  # sha -> {path: blob sha}
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha

    def blob(self, content: str) -> str:
        key = sha("blob", content)
        self.blobs.setdefault(key, content)
        return key

    def tree(self, entries: Mapping[str, str]) -> str:
        listing = "\n".join(f"{p} {b}" for p, b in sorted(entries.items()))
        key = sha("tree", listing)
        self.trees.setdefault(key, dict(entries))
        return key

    def commit(self, tree: str, parents: tuple[str, ...], message: str) -> Commit:
        key = sha("commit", f"{tree}\n{' '.join(parents)}\n{message}")
        made = Commit(key, tree, parents, message)
        self.commits.setdefault(key, made)
        return made

    def files(self, ref: str) -> dict[str, str] | None:
        """The files at a branch (or commit sha), path -> content; None: no such ref."""
        commit = self.commits.get(self.branches.get(ref, ref))
        if commit is None:
            return None
        return {p: self.blobs[b] for p, b in self.trees[commit.tree].items()}

    def file(self, ref: str, path: str) -> str | None:
        commit = self.commits.get(self.branches.get(ref, ref))
        if commit is None:
            return None
        blob = self.trees[commit.tree].get(path)
        return None if blob is None else self.blobs[blob]

    def commit_files(
        self, parent_ref: str, changes: Mapping[str, str | None], message: str
    ) -> Commit:
        """A commit on top of ``parent_ref`` with ``changes`` (None deletes a file)."""
        parent = self.commits[self.branches.get(parent_ref, parent_ref)]
        entries = dict(self.trees[parent.tree])
        for path, content in changes.items():
            if content is None:
                entries.pop(path, None)
            else:
                entries[path] = self.blob(content)
        return self.commit(self.tree(entries), (parent.sha,), message)


def seeded(name: str, branch: str = "main") -> RepoGit:
    """A repository's history: one commit with ``SEED_FILES`` on ``branch``."""
    git = RepoGit()
    entries = {path: git.blob(text.replace("{name}", name)) for path, text in SEED_FILES.items()}
    first = git.commit(git.tree(entries), (), "Initial commit")
    git.branches[branch] = first.sha
    return git
