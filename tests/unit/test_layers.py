"""The layering holds: the pure core imports nothing of ours from outside ``core`` and nothing
that does I/O; the store and the sources do not import the services or the entry points."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import repo_updater

PACKAGE = Path(repo_updater.__file__).parent
# Standard-library modules the pure core may not use: they read clocks, files or the network.
IO_MODULES = {"asyncio", "socket", "os", "time", "subprocess", "pathlib", "io", "http", "urllib3"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def modules_of(package: str) -> list[Path]:
    return sorted((PACKAGE / package).rglob("*.py"))


def test_the_core_imports_only_the_core_and_pure_stdlib() -> None:
    offenders = []
    for path in modules_of("core"):
        for name in imports(path):
            top = name.split(".")[0]
            ours = name.startswith("repo_updater")
            if (ours and not name.startswith("repo_updater.core")) or top in IO_MODULES:
                offenders.append(f"{path.name}: {name}")
            elif not ours and top not in sys.stdlib_module_names and top != "__future__":
                offenders.append(f"{path.name}: third-party {name}")
    assert offenders == []


def test_adapters_do_not_import_services_or_entry_points() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for package in ("store", "sources")
        for path in modules_of(package)
        for name in imports(path)
        if name.startswith(("repo_updater.service_layer", "repo_updater.entrypoints"))
    ]
    assert offenders == []
