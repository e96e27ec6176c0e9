"""The checkers the conformance tests rely on find the drift they are there to find (a checker
that always says "fine" would make every conformance test pass)."""

from __future__ import annotations

from typing import Any

from graphql import build_schema

from tests.conformance.replay import ReadLog, undeclared_reads
from tests.conformance.speccheck import json_problems, rest_spec_problems, schema_problems

FULL = build_schema("""
scalar DateTime
interface Node { id: ID! }
type Query { repo(owner: String!, name: String!, follow: Boolean = true): Repo }
type Repo implements Node { id: ID! name: String! pushedAt: DateTime state: State! }
enum State { OPEN CLOSED MERGED }
enum Kind { A B C }
type Hit { kind(filter: [Kind!]): Int }
type A { a: Int } type B { b: Int } type C { c: Int }
union Any = A | B | C
type Mutation { close(input: CloseInput!): Repo }
input CloseInput { id: ID! reason: String note: String = "" }
""")


def problems_of(sdl: str) -> list[str]:
    return schema_problems(build_schema(sdl), FULL)


def test_a_faithful_excerpt_has_no_problems() -> None:
    assert (
        problems_of("""
        type Query { repo(owner: String!, name: String!): Repo }
        type Repo { name: String! state: State! }
        enum State { OPEN CLOSED MERGED }
        enum Kind { A }
        type Hit { kind(filter: [Kind!]): Int }
        type A { a: Int } type B { b: Int }
        union Any = A | B
    """)
        == []
    )


def test_schema_drift_is_found() -> None:
    found = problems_of("""
        scalar URI
        type Query { repo(owner: String!, name: String, extra: Int): Repo }
        type Repo implements Thing { name: String state: State! size: Int pushedAt: URI }
        interface Thing { name: String }
        enum State { OPEN CLOSED }
        type D { d: Int } type A { a: Int }
        union Any = A | D
    """)
    assert sorted(found) == sorted([
        "argument Query.repo(name): type String here, String! there",
        "argument Query.repo(extra): not in the full schema",
        "type Repo: does not implement Thing",
        "field Repo.name: type String here, String! there",
        "field Repo.size: not in the full schema",
        "field Repo.pushedAt: type URI here, DateTime there",
        "enum State: value MERGED missing (the host may send it)",
        "union Any: no member D",
        "type D: not in the full schema",
        "type Thing: not in the full schema",
        "type URI: not in the full schema",
    ])  # fmt: skip


def test_a_required_argument_left_out_is_found() -> None:
    found = problems_of("type Query { repo(owner: String!): Repo } type Repo { name: String! }")
    assert found == ["argument Query.repo(name): required there, missing here"]


def test_input_object_drift_is_found() -> None:
    faithful = "type Mutation { close(input: CloseInput!): Repo } type Repo { name: String! }"
    assert problems_of(faithful + " input CloseInput { id: ID! reason: String }") == []
    found = problems_of(faithful + " input CloseInput { reason: Int force: Boolean }")
    assert sorted(found) == sorted([
        "input field CloseInput.reason: type Int here, String there",
        "input field CloseInput.force: not in the full schema",
        "input field CloseInput.id: required there, missing here",
    ])  # fmt: skip


OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "paths": {
        "/pulls": {
            "get": {
                "parameters": [{"name": "state", "in": "query"}],
                "responses": {"200": {"content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/simple"}}}}}},
            }
        }
    },
    "components": {"schemas": {"simple": {"type": "object", "properties": {
        "number": {"type": "integer"},
        "body": {"type": "string", "nullable": True},
        "head": {"type": "object", "properties": {"ref": {"type": "string"}}},
    }}}},
}  # fmt: skip


def test_rest_excerpt_drift_is_found() -> None:
    good = {
        "endpoints": {"GET /pulls": {"query": ["state"], "response": "[simple]"}},
        "schemas": {"simple": {"properties": {"number": "integer", "body": "string?",
                                              "head": {"ref": "string"}},
                               "absent": ["additions"]}},
    }  # fmt: skip
    assert rest_spec_problems(good, OPENAPI) == []
    bad = {
        "endpoints": {
            "GET /pulls": {"query": ["state", "per_page"], "response": "[full]"},
            "POST /pulls": {"response": "simple"},
        },
        "schemas": {"simple": {"properties": {"number": "string", "body": "string",
                                              "head": {"sha": "string"}},
                               "absent": ["number"]}},
    }  # fmt: skip
    assert sorted(rest_spec_problems(bad, OPENAPI)) == sorted([
        "GET /pulls: no query parameter per_page",
        "GET /pulls: answers ['simple'], not ['full']",
        "POST /pulls: no such operation",
        "simple.number: string here, integer there",
        "simple.body: may be null there, not here",
        "simple.head.sha: not in the description",
        "simple.number: said absent, but the description has it",
    ])  # fmt: skip


def test_json_answer_drift_is_found() -> None:
    declared = {"number": "integer", "body": "string?", "head": {"ref": "string"}}
    assert json_problems("x", declared, {"number": 1, "body": None, "head": {"ref": "a"}}) == []
    declared["additions"] = "integer"  # in the schema, but this endpoint leaves it out
    found = json_problems(
        "x",
        declared,
        {"number": True, "head": {"ref": None}, "additions": 3, "title": "t"},
        omit=frozenset({"additions"}),
    )
    assert found == [
        "x.number: bool, expected integer",
        "x.body: missing",
        "x.head.ref: NoneType, expected string",
        "x.additions: sent, but the host leaves it out here",
        "x.title: not in the excerpt",
    ]


def test_reads_of_undocumented_fields_are_found() -> None:
    spec = {
        "endpoints": {"GET /repos/{owner}/{repo}/pulls": {"response": "[simple]"}},
        "schemas": {"simple": {"properties": {"number": "integer", "head": {"ref": "string"}},
                               "absent": ["additions"]}},
    }  # fmt: skip
    log = ReadLog(api_path="/api")
    log.reads = {
        "GET /repos/a/b/pulls": {"number", "head.ref", "additions", "head.sha", "merged"},
        "GET /elsewhere": {"x"},
    }
    assert list(undeclared_reads(spec, log)) == [
        "GET /elsewhere: not an endpoint of the excerpt",
        "GET /repos/a/b/pulls: reads head.sha, which the excerpt does not list",
        "GET /repos/a/b/pulls: reads merged, which the excerpt does not list",
    ]
