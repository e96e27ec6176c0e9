"""Every GraphQL document the GitHub source sends (the batched pull request loads, and the
writes' node id lookup and mutations) validates against GitHub's public schema (the written
excerpt in specs/github.graphql, re-checked against upstream by
scripts/check_conformance_specs.py), the emulator's schema is a subset of it, the excerpt holds
nothing that neither uses, and the source maps every value GitHub may send."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLEnumType, GraphQLSchema, build_schema, parse, validate

from repo_updater.core.domain import ChangesetRef, CheckState, ReviewState
from repo_updater.emulator.github_schema import MUTATION_SDL, SDL
from repo_updater.sources.github_graphql import build_query, check_state, host_state, review_state
from repo_updater.sources.github_writes import MUTATIONS, NODE_ID_QUERY, mutation_document
from tests.conformance.speccheck import (
    output_enums,
    schema_coordinates,
    schema_problems,
    used_coordinates,
)

SPEC = Path(__file__).parent / "specs" / "github.graphql"


@pytest.fixture(scope="module")
def public() -> GraphQLSchema:
    return build_schema(SPEC.read_text(encoding="utf-8"))


def queries() -> list[str]:
    """The documents the source sends: one batch per shape it can take, then the writes'."""
    one = [ChangesetRef(1, "acme/app", "1", 7)]
    many = [ChangesetRef(i, f"org{i % 7}/repo-{i % 11}", "", i + 1) for i in range(50)]
    odd = [ChangesetRef(1, 'we"ird/na\\me', "", 2**31 - 1), ChangesetRef(2, "ünï/cödé", "", 1)]
    loads = [build_query(refs)[0] for refs in (one, many, odd)]
    return [*loads, NODE_ID_QUERY, *(mutation_document(m) for m in MUTATIONS)]


@pytest.mark.parametrize(
    "query", queries(), ids=["one", "fifty", "odd-names", "node-id", *MUTATIONS]
)
def test_every_document_the_source_sends_validates(public: GraphQLSchema, query: str) -> None:
    assert [e.message for e in validate(public, parse(query))] == []


def test_emulator_schema_is_a_subset_of_the_public_one(public: GraphQLSchema) -> None:
    assert schema_problems(build_schema(SDL + MUTATION_SDL), public) == []


def test_excerpt_holds_only_what_the_source_or_the_emulator_uses(public: GraphQLSchema) -> None:
    used: set[str] = set()
    for query in queries():
        used |= used_coordinates(public, parse(query))
    used |= schema_coordinates(build_schema(SDL + MUTATION_SDL))
    assert sorted(schema_coordinates(public) - used) == []


def test_the_source_maps_every_value_github_sends(public: GraphQLSchema) -> None:
    """Enums GitHub sends are complete in the excerpt (the upstream check enforces it): each
    value must mean something to the source."""
    assert output_enums(public) >= {"StatusState", "PullRequestState", "PullRequestReviewDecision"}

    def values(name: str) -> list[str]:
        enum = public.get_type(name)
        assert isinstance(enum, GraphQLEnumType)
        return list(enum.values)

    for state in values("StatusState"):
        node = {"commits": {"nodes": [{"commit": {"statusCheckRollup": {"state": state}}}]}}
        assert check_state(node) is not CheckState.UNKNOWN, state
    for state in values("PullRequestState"):
        host_state({"state": state, "isDraft": False})  # raises on an unknown state
    for decision in values("PullRequestReviewDecision"):
        assert review_state({"reviewDecision": decision}) in ReviewState
    for state in values("PullRequestReviewState"):
        reviews = {"nodes": [{"state": state}]}
        derived = review_state({"reviewDecision": None, "latestOpinionatedReviews": reviews})
        assert derived in ReviewState
