"""Batch specs: validation errors name the field; what a spec does to a repository's files,
the diff a preview shows, and the writes a re-apply needs (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from repo_updater.batch_spec import SpecError, load_spec, parse_spec, spec_to_json
from repo_updater.core.specs import (
    SKIP_NO_FILE,
    SKIP_UNCHANGED,
    Applied,
    Published,
    decide,
    matches,
    skip_by_flags,
    steps,
    unified_diff,
)
from tests.support.specs import spec_data

CI = ".github/workflows/ci.yml"
V3 = "steps:\n  - uses: actions/checkout@v3\n"


def error_of(data: Any) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ""}, "name:"),
        ({"name": "has space"}, "name:"),
        ({"on": {"repos": []}}, "on.repos:"),
        ({"on": {"repos": ["*"], "skip_archived": "maybe"}}, "on.skip_archived:"),
        ({"changes": []}, "changes:"),
        ({"changes": [{"path": "a", "write": "x", "delete": True}]}, "changes.0:"),
        ({"changes": [{"path": "a"}]}, "changes.0:"),
        ({"changes": [{"path": "../etc/passwd", "delete": True}]}, "changes.0.path:"),
        ({"changes": [{"path": "a", "replace": {"regex": "(", "replacement": ""}}]},
         "changes.0.replace.regex:"),
        ({"changes": [{"path": "a", "replace": {"regex": "a", "replacement": r"\2"}}]},
         "changes.0.replace:"),
        ({"title": ""}, "changeset.title:"),
        ({"branch": "bad..branch"}, "changeset.branch:"),
        ({"published": "yes"}, "changeset.published:"),
        ({"on_removed": "delete"}, "changeset.on_removed:"),
        ({"colour": "red"}, "colour:"),
        ({"changes": [{"path": f"f{i}", "write": "x" * 600_000} for i in range(2)]}, "(top)"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(change: dict[str, Any], field: str) -> None:
    message = error_of(spec_data(**change))
    assert message.startswith("invalid batch spec:")
    assert f"\n  {field}" in message


def test_a_spec_that_is_not_a_mapping_or_not_yaml_is_refused_clearly() -> None:
    assert "mapping" in error_of(["a list"])
    with pytest.raises(SpecError, match="not YAML"):
        load_spec("name: [unclosed")


def test_yaml_on_key_and_round_trip() -> None:
    text = (
        "name: x\non:\n  repos: ['*']\nchanges:\n  - {path: README.md, write: hi}\n"
        "changeset: {title: t, branch: b, commit_message: m, published: false}\n"
    )
    spec = load_spec(text)
    assert spec.on.repos == ("*",)
    assert spec.changeset.published is Published.FALSE
    assert parse_spec(spec_to_json(spec)) == spec
    assert parse_spec(spec_to_json(parse_spec(spec_data()))) == parse_spec(spec_data())


def test_matching_globs_exclude_and_flags() -> None:
    spec = parse_spec(spec_data(on={"repos": ["*/acme/*"], "exclude": ["*/acme/legacy-*"],
                                    "skip_forks": True}))  # fmt: skip
    assert matches(spec, "github.test/ACME/app")
    assert not matches(spec, "github.test/acme/legacy-app")
    assert not matches(spec, "github.test/other/app")
    assert skip_by_flags(spec, archived=True, fork=False) == "archived"
    assert skip_by_flags(spec, archived=False, fork=True) == "fork"
    assert skip_by_flags(spec, archived=False, fork=False) is None


def test_decide_replace_write_delete_and_skip_reasons() -> None:
    spec = parse_spec(spec_data())
    changed = decide(spec, {CI: V3})
    assert changed.skip is None
    assert changed.files == {CI: V3.replace("@v3", "@v4")}
    assert decide(spec, {CI: None}).skip == SKIP_NO_FILE
    assert decide(spec, {CI: "nothing to see\n"}).skip == SKIP_UNCHANGED
    both = parse_spec(spec_data(changes=[
        {"path": "OWNERS", "write": "team\n"}, {"path": "old.txt", "delete": True}]))  # fmt: skip
    outcome = decide(both, {"OWNERS": None, "old.txt": "x\n"})
    assert outcome.files == {"OWNERS": "team\n", "old.txt": None}
    assert decide(both, {"OWNERS": "team\n", "old.txt": None}).skip == SKIP_UNCHANGED


def test_unified_diff_shows_changes_new_and_deleted_files() -> None:
    diff = unified_diff({CI: V3, "gone": "x\n"}, {CI: V3.replace("@v3", "@v4"), "gone": None,
                                                  "new": "y\n"})  # fmt: skip
    assert f"--- a/{CI}\n+++ b/{CI}\n" in diff
    assert "-  - uses: actions/checkout@v3\n+  - uses: actions/checkout@v4\n" in diff
    assert "--- a/gone\n+++ /dev/null\n" in diff
    assert "--- /dev/null\n+++ b/new\n@@ -0,0 +1 @@\n+y\n" in diff


def test_steps_write_only_what_differs() -> None:
    spec = parse_spec(spec_data(published=True))
    outcome = decide(spec, {CI: V3})
    assert steps(spec, outcome, Applied()).describe() == "commit, then open pull request"
    same = Applied(digest=outcome.digest, number=1, title="Upgrade checkout", body="Automated.")
    assert not steps(spec, outcome, same).any
    retitled = parse_spec(spec_data(published=True, title="New"))
    assert steps(retitled, decide(retitled, {CI: V3}), same).describe() == "update pull request"
    draft = Applied(digest=outcome.digest, number=1, title="Upgrade checkout", body="Automated.",
                    draft=True)  # fmt: skip
    assert steps(spec, outcome, draft).describe() == "mark ready"
    closed = Applied(digest=outcome.digest, number=1, title="x", open=False)
    assert not steps(spec, outcome, closed).any  # a closed pull request is left alone
    unpublished = parse_spec(spec_data(published=False))
    assert steps(unpublished, decide(unpublished, {CI: V3}), Applied()).describe() == "commit"
    nothing = decide(spec, {CI: None})
    assert not steps(spec, nothing, Applied()).any  # no branch, no pull request
    other_message = parse_spec(spec_data(commit_message="other"))
    assert decide(other_message, {CI: V3}).digest != outcome.digest
