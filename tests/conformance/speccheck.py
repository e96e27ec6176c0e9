"""Comparisons behind the conformance tests and ``scripts/check_conformance_specs.py`` (pure:
schemas and dicts in, a list of problems out; an empty list means conformant).

- GraphQL: ``schema_problems(sub, full)``: every type, field, argument, input field,
  interface, union member and enum value of ``sub`` exists in ``full`` with the same type, and
  ``sub`` has every argument and input field ``full`` requires. Enums used as output types
  must list all of ``full``'s values (what a host may send must be known); input enums may
  list fewer. So a document that is valid against ``sub`` is valid against ``full``.
- ``used_coordinates(schema, document)``: the schema coordinates a document touches.
- REST (``rest_spec_problems``): an excerpt of response fields (``specs/*_rest.yaml``) against
  an OpenAPI 3 or Swagger 2 description; ``json_problems``: a JSON answer against the excerpt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    visit,
)
from graphql.language import ArgumentNode, EnumValueNode, ObjectFieldNode
from graphql.pyutils import Undefined

BUILT_IN = {"String", "Int", "Float", "Boolean", "ID"}

# --- GraphQL ---------------------------------------------------------------------------------


def _own_types(schema: GraphQLSchema) -> Iterator[GraphQLNamedType]:
    for name, named in sorted(schema.type_map.items()):
        if not name.startswith("__") and name not in BUILT_IN:
            yield named


def output_enums(schema: GraphQLSchema) -> set[str]:
    """Enums a host sends (field types), as opposed to ones only a client sends (arguments)."""
    out: set[str] = set()
    for named in _own_types(schema):
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for field in named.fields.values():
                inner = get_named_type(field.type)
                if isinstance(inner, GraphQLEnumType):
                    out.add(inner.name)
    return out


def schema_problems(sub: GraphQLSchema, full: GraphQLSchema) -> list[str]:
    problems: list[str] = []
    complete = output_enums(sub)
    for named in _own_types(sub):
        other = full.get_type(named.name)
        if other is None:
            problems.append(f"type {named.name}: not in the full schema")
        elif type(other) is not type(named):
            problems.append(f"type {named.name}: a {type(named).__name__[7:]} here, "
                            f"a {type(other).__name__[7:]} there")  # fmt: skip
        elif isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(other, GraphQLObjectType | GraphQLInterfaceType)
            problems += _object_problems(named, other)
        elif isinstance(named, GraphQLUnionType):
            assert isinstance(other, GraphQLUnionType)
            extra = {t.name for t in named.types} - {t.name for t in other.types}
            problems += [f"union {named.name}: no member {m}" for m in sorted(extra)]
        elif isinstance(named, GraphQLEnumType):
            assert isinstance(other, GraphQLEnumType)
            ours, theirs = set(named.values), set(other.values)
            problems += [f"enum {named.name}: no value {v}" for v in sorted(ours - theirs)]
            if named.name in complete:
                problems += [f"enum {named.name}: value {v} missing (the host may send it)"
                             for v in sorted(theirs - ours)]  # fmt: skip
        elif isinstance(named, GraphQLInputObjectType):
            assert isinstance(other, GraphQLInputObjectType)
            problems += _input_problems(named, other)
        else:
            assert isinstance(named, GraphQLScalarType)
    return problems


def _object_problems(
    ours: GraphQLObjectType | GraphQLInterfaceType, theirs: GraphQLObjectType | GraphQLInterfaceType
) -> list[str]:
    problems: list[str] = []
    missing_ifaces = {i.name for i in ours.interfaces} - {i.name for i in theirs.interfaces}
    problems += [f"type {ours.name}: does not implement {i}" for i in sorted(missing_ifaces)]
    for name, field in ours.fields.items():
        where = f"{ours.name}.{name}"
        other = theirs.fields.get(name)
        if other is None:
            problems.append(f"field {where}: not in the full schema")
            continue
        if str(field.type) != str(other.type):
            problems.append(f"field {where}: type {field.type} here, {other.type} there")
        for arg_name, arg in field.args.items():
            other_arg = other.args.get(arg_name)
            if other_arg is None:
                problems.append(f"argument {where}({arg_name}): not in the full schema")
            elif str(arg.type) != str(other_arg.type):
                problems.append(f"argument {where}({arg_name}): type {arg.type} here, "
                                f"{other_arg.type} there")  # fmt: skip
        for arg_name, other_arg in other.args.items():
            required = isinstance(other_arg.type, GraphQLNonNull)
            if required and other_arg.default_value is Undefined and arg_name not in field.args:
                problems.append(f"argument {where}({arg_name}): required there, missing here")
    return problems


def _input_problems(ours: GraphQLInputObjectType, theirs: GraphQLInputObjectType) -> list[str]:
    problems: list[str] = []
    for name, field in ours.fields.items():
        where = f"{ours.name}.{name}"
        other = theirs.fields.get(name)
        if other is None:
            problems.append(f"input field {where}: not in the full schema")
        elif str(field.type) != str(other.type):
            problems.append(f"input field {where}: type {field.type} here, {other.type} there")
    for name, other in theirs.fields.items():
        required = isinstance(other.type, GraphQLNonNull) and other.default_value is Undefined
        if required and name not in ours.fields:
            problems.append(f"input field {ours.name}.{name}: required there, missing here")
    return problems


def schema_coordinates(schema: GraphQLSchema) -> set[str]:
    """``Type.field``, ``Type.field(arg:)``, ``Input.field``, ``Enum.VALUE`` and union
    ``Union|Member`` of a schema (types that only hold those are implied)."""
    out: set[str] = set()
    for named in _own_types(schema):
        if isinstance(named, GraphQLInputObjectType):
            out.update(f"{named.name}.{name}" for name in named.fields)
        elif isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
            for name, field in named.fields.items():
                out.add(f"{named.name}.{name}")
                out.update(f"{named.name}.{name}({arg}:)" for arg in field.args)
        elif isinstance(named, GraphQLEnumType):
            out.update(f"{named.name}.{value}" for value in named.values)
        elif isinstance(named, GraphQLUnionType):
            out.update(f"{named.name}|{member.name}" for member in named.types)
    return out


def used_coordinates(schema: GraphQLSchema, document: DocumentNode) -> set[str]:
    """The coordinates (see ``schema_coordinates``) a valid document selects or passes."""
    info = TypeInfo(schema)
    used: set[str] = set()
    fields: list[str] = []  # the coordinates of the fields being visited

    class Collect(Visitor):
        def enter_field(self, node: FieldNode, *_args: Any) -> None:
            parent = info.get_parent_type()
            coordinate = f"{parent.name if parent else '?'}.{node.name.value}"
            fields.append(coordinate)
            if not node.name.value.startswith("__"):
                used.add(coordinate)

        def leave_field(self, *_args: Any) -> None:
            fields.pop()

        def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
            if fields:
                used.add(f"{fields[-1]}({node.name.value}:)")

        def enter_object_field(self, node: ObjectFieldNode, *_args: Any) -> None:
            parent = get_named_type(info.get_parent_input_type())
            if isinstance(parent, GraphQLInputObjectType):
                used.add(f"{parent.name}.{node.name.value}")

        def enter_enum_value(self, node: EnumValueNode, *_args: Any) -> None:
            enum = get_named_type(info.get_input_type())
            if isinstance(enum, GraphQLEnumType):
                used.add(f"{enum.name}.{node.value}")

        def enter_inline_fragment(self, *_args: Any) -> None:
            parent, condition = info.get_parent_type(), info.get_type()
            if isinstance(parent, GraphQLUnionType) and condition is not None:
                used.add(f"{parent.name}|{get_named_type(condition).name}")

    visit(document, TypeInfoVisitor(info, Collect()))
    return used


# --- REST ------------------------------------------------------------------------------------

JSON_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _resolve(spec: Mapping[str, Any], node: Any) -> dict[str, Any]:
    """Follow ``$ref`` (OpenAPI 3 ``#/components/...`` or Swagger 2 ``#/definitions/...``) and
    merge ``allOf``."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in str(node["$ref"]).lstrip("#/").split("/"):
            target = target[part]
        node = target
    if not isinstance(node, dict):
        return {}
    if "allOf" in node:
        merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            resolved = _resolve(spec, part)
            merged.setdefault("properties", {}).update(resolved.get("properties", {}))
            for key in ("type", "nullable"):
                if key in resolved:
                    merged.setdefault(key, resolved[key])
        return merged
    return node


def _alternatives(spec: Mapping[str, Any], node: Any) -> list[dict[str, Any]]:
    resolved = _resolve(spec, node)
    for key in ("oneOf", "anyOf"):
        if key in resolved:
            return [alt for part in resolved[key] for alt in _alternatives(spec, part)]
    return [resolved]


def _types(spec: Mapping[str, Any], node: Any) -> tuple[set[str], bool | None]:
    """The JSON types a schema node allows, and whether it allows null (None: unknown, as
    in Swagger 2, which cannot say)."""
    types: set[str] = set()
    nullable: bool | None = None
    for alt in _alternatives(spec, node):
        kind = alt.get("type")
        if isinstance(kind, list):  # OpenAPI 3.1 style
            types.update(k for k in kind if k != "null")
            nullable = nullable or "null" in kind
        elif isinstance(kind, str):
            types.add(kind)
        elif "properties" in alt:
            types.add("object")
        if alt.get("nullable") is True or alt.get("x-nullable") is True:
            nullable = True
        elif "openapi" in spec and nullable is None:
            nullable = False
    return types, nullable


def parse_type(declared: str) -> tuple[str, bool]:
    """``"string?"`` -> ("string", True): an excerpt's type, and whether null is allowed."""
    return declared.rstrip("?"), declared.endswith("?")


def _property_problems(spec: Mapping[str, Any], where: str, declared: Any, node: Any) -> list[str]:
    if isinstance(declared, dict):  # a nested object: compare its properties
        properties = {}
        for alt in _alternatives(spec, node):
            properties.update(alt.get("properties", {}))
        problems = []
        for name, inner in declared.items():
            if name not in properties:
                problems.append(f"{where}.{name}: not in the description")
            else:
                problems += _property_problems(spec, f"{where}.{name}", inner, properties[name])
        return problems
    kind, nullable = parse_type(str(declared))
    types, their_nullable = _types(spec, node)
    problems = []
    if types and kind not in types and not (kind == "integer" and "number" in types):
        problems.append(f"{where}: {kind} here, {'/'.join(sorted(types))} there")
    if nullable and their_nullable is False:
        problems.append(f"{where}: nullable here, not there")
    if not nullable and their_nullable is True:
        problems.append(f"{where}: may be null there, not here")
    return problems


def component(spec: Mapping[str, Any], name: str) -> Any:
    if "components" in spec:
        return spec["components"]["schemas"].get(name)
    return spec.get("definitions", {}).get(name)


def _operation(spec: Mapping[str, Any], endpoint: str) -> dict[str, Any] | None:
    method, _, path = endpoint.partition(" ")
    item = spec.get("paths", {}).get(path)
    operation = item.get(method.lower()) if isinstance(item, dict) else None
    return operation if isinstance(operation, dict) else None


def _response_schemas(spec: Mapping[str, Any], operation: dict[str, Any]) -> list[str]:
    """Names of the schemas a 2xx answer uses (the items' schema for an array)."""
    names = []
    for status, response in operation.get("responses", {}).items():
        if not str(status).startswith("2"):
            continue
        response = _resolve(spec, response)
        content = response.get("content", {}).get("application/json", {})
        schema = content.get("schema") or response.get("schema")
        if isinstance(schema, dict) and "$ref" not in schema and schema.get("type") == "array":
            schema = schema.get("items")
        for alt in (schema.get("oneOf") or [schema]) if isinstance(schema, dict) else []:
            if isinstance(alt, dict) and "$ref" in alt:
                names.append(str(alt["$ref"]).rsplit("/", 1)[-1])
    return names


def rest_spec_problems(excerpt: Mapping[str, Any], spec: Mapping[str, Any]) -> list[str]:
    """The excerpt's endpoints (method, path, query parameters, response schema) and schemas
    (property names, types, nullability; ``absent`` properties really absent) against a full
    OpenAPI / Swagger description."""
    problems: list[str] = []
    for endpoint, about in excerpt.get("endpoints", {}).items():
        operation = _operation(spec, endpoint)
        if operation is None:
            problems.append(f"{endpoint}: no such operation")
            continue
        params = {_resolve(spec, p).get("name") for p in operation.get("parameters", [])}
        problems += [f"{endpoint}: no query parameter {q}" for q in about.get("query", [])
                     if q not in params]  # fmt: skip
        wanted = set(str(about["response"]).strip("[]").split("|"))
        actual = set(_response_schemas(spec, operation))
        if wanted != actual:
            problems.append(f"{endpoint}: answers {sorted(actual)}, not {sorted(wanted)}")
    for name, schema in excerpt.get("schemas", {}).items():
        node = component(spec, name)
        if node is None:
            problems.append(f"schema {name}: not in the description")
            continue
        problems += _property_problems(spec, name, schema.get("properties", {}), node)
        there = set(_resolve(spec, node).get("properties", {}))
        problems += [f"{name}.{p}: said absent, but the description has it"
                     for p in schema.get("absent", []) if p in there]  # fmt: skip
    return problems


def endpoint_pattern(endpoint: str) -> tuple[str, re.Pattern[str]]:
    """``"GET /repos/{owner}/{repo}"`` -> ("GET", a regex matching concrete paths)."""
    method, _, path = endpoint.partition(" ")
    regex = re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(path))
    return method, re.compile(f"^{regex}$")


def json_problems(
    where: str,
    declared: Mapping[str, Any],
    value: Any,
    *,
    omit: frozenset[str] = frozenset(),
    exact: bool = True,
) -> list[str]:
    """A JSON object against an excerpt schema's properties: each declared property present
    (unless in ``omit``) with its type; with ``exact``, nothing undeclared."""
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    problems = []
    for name, kind in declared.items():
        if name in omit:
            if name in value:
                problems.append(f"{where}.{name}: sent, but the host leaves it out here")
            continue
        if name not in value:
            problems.append(f"{where}.{name}: missing")
        elif isinstance(kind, dict):
            problems += json_problems(f"{where}.{name}", kind, value[name], exact=exact)
        else:
            base, nullable = parse_type(str(kind))
            got = value[name]
            ok = (got is None and nullable) or (
                got is not None and isinstance(got, JSON_TYPES[base])
                and not (base in ("integer", "number") and isinstance(got, bool))
            )  # fmt: skip
            if not ok:
                problems.append(f"{where}.{name}: {type(got).__name__}, expected {kind}")
    if exact:
        problems += [f"{where}.{name}: not in the excerpt" for name in value
                     if name not in declared]  # fmt: skip
    return problems
