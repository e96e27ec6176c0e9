#!/usr/bin/env python3
"""Re-check the written spec excerpts in tests/conformance/specs against full upstream files.

The conformance tests (tests/conformance) check the sources and the emulator against the small
excerpts kept in the repository; this script checks that the excerpts still say what the hosts'
published descriptions say. It needs the upstream files, so it is run by hand, not in CI:

    .venv/bin/python scripts/check_conformance_specs.py \\
        --github-graphql schema.graphql      # github.com/octokit/graphql-schema
        --github-openapi api.github.com.json # github.com/github/rest-api-description (or .yaml)
        --gitea-swagger swagger.v1.json      # Gitea's templates/swagger/v1_json.tmpl as served

Each option is optional; exit status 1 when an excerpt disagrees with its upstream file (each
problem is printed), 2 when a file cannot be read. Update the header of the excerpt with the
upstream commit or version it was checked against.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from graphql import build_schema

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "tests" / "conformance" / "specs"
sys.path.insert(0, str(ROOT))

from tests.conformance.speccheck import rest_spec_problems, schema_problems  # noqa: E402


def load_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    return json.loads(text)


def check_graphql(upstream: Path) -> list[str]:
    # The public schema has been seen with a field defined twice; build it without validation.
    full = build_schema(upstream.read_text(encoding="utf-8"), assume_valid_sdl=True)
    excerpt = build_schema((SPECS / "github.graphql").read_text(encoding="utf-8"))
    return schema_problems(excerpt, full)


def rest_checker(excerpt_name: str) -> Callable[[Path], list[str]]:
    def check(upstream: Path) -> list[str]:
        excerpt = yaml.safe_load((SPECS / excerpt_name).read_text(encoding="utf-8"))
        return rest_spec_problems(excerpt, load_document(upstream))

    return check


CHECKS: dict[str, tuple[str, Callable[[Path], list[str]]]] = {
    "github_graphql": ("specs/github.graphql", check_graphql),
    "github_openapi": ("specs/github_rest.yaml", rest_checker("github_rest.yaml")),
    "gitea_swagger": ("specs/gitea_rest.yaml", rest_checker("gitea_rest.yaml")),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check the conformance spec excerpts against full upstream descriptions."
    )
    parser.add_argument(
        "--github-graphql", type=Path, help="GitHub's public schema (octokit/graphql-schema)"
    )
    parser.add_argument(
        "--github-openapi", type=Path, help="GitHub's REST OpenAPI description (JSON or YAML)"
    )
    parser.add_argument("--gitea-swagger", type=Path, help="Gitea's Swagger 2 description")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None}
    if not given:
        parser.error("give at least one upstream file")
    failed = False
    for option, path in given.items():
        excerpt, check = CHECKS[option]
        try:
            problems = check(path)
        except (OSError, ValueError, yaml.YAMLError) as error:
            print(f"{excerpt}: cannot read {path}: {error}", file=sys.stderr)
            return 2
        status = "OK" if not problems else f"{len(problems)} problem(s)"
        print(f"{excerpt} against {path}: {status}")
        for problem in problems:
            print(f"  - {problem}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
