"""GitHub GraphQL API emulator: a real schema (``graphql-core``) for the subset a changeset
syncer needs, served at ``POST /github/graphql``.

Supported: ``repository(owner, name) { pullRequest(number) { ... } }`` with state, draft, diff
stats, refs, timestamps, ``reviewDecision`` (null unless the repo's ``review_required``, as on
GitHub without a branch rule), ``latestOpinionatedReviews``, ``commits(last: 1)`` with the
status check rollup, ``timelineItems(first|last, itemTypes)`` (reviews, closed, merged, reopened
events), and ``rateLimit { cost limit remaining used resetAt }``. Aliases work, so one query can
load many pull requests from many repositories. A missing repository or pull request yields null
at its path plus an error ``{"type": "NOT_FOUND", "path": [...], "message": ...}``, like GitHub;
a repository flagged ``forbidden`` yields null plus a ``FORBIDDEN`` error (GitHub's answer under
SAML enforcement or an IP allow list). ``repository(owner, name)`` follows renames: an old name
resolves to the renamed repository, as on GitHub.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    execute_sync,
    parse,
    validate,
)

from repo_updater.core.domain import CheckState, HostPullState, ReviewState
from repo_updater.emulator.github_schema import SDL
from repo_updater.emulator.state import EmulatedPull, EmulatedRepo, EmulatedReview, HostState

_CHECK_TO_STATUS = {
    CheckState.PASSED: "SUCCESS",
    CheckState.FAILED: "FAILURE",
    CheckState.PENDING: "PENDING",
}
_EVENT_TYPES = {"closed": "ClosedEvent", "merged": "MergedEvent", "reopened": "ReopenedEvent"}
_ITEM_TYPES = {
    "PULL_REQUEST_REVIEW": "PullRequestReview",
    "CLOSED_EVENT": "ClosedEvent",
    "MERGED_EVENT": "MergedEvent",
    "REOPENED_EVENT": "ReopenedEvent",
}
_DOCUMENT_CACHE_SIZE = 256


class NotFoundError(Exception):
    """A repository or pull request the query asked for does not exist."""


class ForbiddenError(Exception):
    """The token may not read the repository the query asked for."""


@dataclass(frozen=True, slots=True)
class _PR:
    repo: EmulatedRepo
    pull: EmulatedPull


def github_time(value: datetime | None) -> str | None:
    """``2024-05-01T12:00:00Z`` (isoformat is several times faster than strftime)."""
    if value is None:
        return None
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat(timespec="seconds")[:19] + "Z"


_time = github_time


def _actor(login: str) -> dict[str, str]:
    return {"__typename": "User", "login": login}


def latest_opinionated(pull: EmulatedPull) -> dict[str, EmulatedReview]:
    """Each reviewer's latest review that is not a comment or pending (a dismissed one stays,
    as DISMISSED), in the order they were submitted."""
    latest: dict[str, EmulatedReview] = {}
    for review in pull.reviews:
        if review.state in (ReviewState.COMMENTED, ReviewState.PENDING):
            continue
        latest.pop(review.author, None)
        latest[review.author] = review
    return latest


def review_decision(repo: EmulatedRepo, pull: EmulatedPull) -> str | None:
    """GitHub's decision: null unless the base branch requires reviews; then the latest
    decisive review of each reviewer counts."""
    if not repo.review_required:
        return None
    latest = {a: r.state for a, r in latest_opinionated(pull).items()}
    if ReviewState.CHANGES_REQUESTED in latest.values():
        return "CHANGES_REQUESTED"
    if ReviewState.APPROVED in latest.values():
        return "APPROVED"
    return "REVIEW_REQUIRED"


def _page_size(first: int | None, last: int | None, what: str) -> tuple[int, bool]:
    if first is None and last is None:
        raise GraphQLError(f"You must provide a `first` or `last` value to paginate {what}.")
    size = first if first is not None else last
    assert size is not None
    if size < 0 or size > 100:
        raise GraphQLError(
            f"Requesting {size} records on the `{what}` connection exceeds the limit of 100."
        )
    return size, first is not None


# --- resolvers -------------------------------------------------------------------------------


def _repository(
    _root: Any, info: GraphQLResolveInfo[Any], owner: str, name: str, followRenames: bool = True
) -> EmulatedRepo:
    host: HostState = info.context["host"]
    full = f"{owner}/{name}"
    repo = host.resolve_repo(full) if followRenames else host.find_repo(full)
    if repo is None:
        raise NotFoundError(f"Could not resolve to a Repository with the name '{owner}/{name}'.")
    if repo.forbidden:
        raise ForbiddenError(
            f"Resource protected by organization SAML enforcement. You must grant your "
            f"Personal Access token access to the organization {repo.owner!r}."
        )
    return repo


def _pull_request(repo: EmulatedRepo, _info: GraphQLResolveInfo[Any], number: int) -> _PR:
    pull = repo.pulls.get(number)
    if pull is None:
        raise NotFoundError(f"Could not resolve to a PullRequest with the number of {number}.")
    return _PR(repo, pull)


def _rate_limit(_root: Any, info: GraphQLResolveInfo[Any], **_args: Any) -> dict[str, Any]:
    host: HostState = info.context["host"]
    faults = host.faults
    limit = faults.rate_limit_total
    # What remains after this query (cost 1; the fault middleware counts it once answered).
    left = faults.rate_limit_remaining
    remaining = limit if left is None else max(0, left - 1)
    reset_at = host.rate_limit_reset_at or time.time() + faults.rate_limit_reset_in
    return {
        "cost": 1,
        "limit": limit,
        "remaining": remaining,
        "used": limit - remaining,
        "resetAt": _time(datetime.fromtimestamp(reset_at, UTC)),
    }


def _latest_reviews(pr: _PR, _info: GraphQLResolveInfo[Any], **args: Any) -> dict[str, Any]:
    size, from_start = _page_size(args.get("first"), args.get("last"), "latestOpinionatedReviews")
    base = pr.repo.id * 1_000_000 + pr.pull.number
    nodes = [
        {
            "__typename": "PullRequestReview",
            "id": f"PRR_{base}_{author}",
            "state": review.state.value,
            "author": _actor(author),
            "submittedAt": _time(review.at),
        }
        for author, review in latest_opinionated(pr.pull).items()
    ]
    page = nodes[:size] if from_start else nodes[max(0, len(nodes) - size) :]
    return {"nodes": page, "totalCount": len(nodes)}


def _commits(pr: _PR, _info: GraphQLResolveInfo[Any], **args: Any) -> dict[str, Any]:
    size, _ = _page_size(args.get("first"), args.get("last"), "commits")
    rollup = _CHECK_TO_STATUS.get(pr.pull.check_state)
    commit = {
        "oid": f"{pr.repo.id:08x}{pr.pull.number:08x}".ljust(40, "0"),
        "statusCheckRollup": None if rollup is None else {"state": rollup},
    }
    nodes = [{"commit": commit}] if size > 0 else []
    return {"nodes": nodes, "totalCount": 1}


def _timeline(pr: _PR, _info: GraphQLResolveInfo[Any], **args: Any) -> dict[str, Any]:
    size, from_start = _page_size(args.get("first"), args.get("last"), "timelineItems")
    wanted = {_ITEM_TYPES[t] for t in args.get("itemTypes") or _ITEM_TYPES}
    base = pr.repo.id * 1_000_000 + pr.pull.number
    items: list[tuple[datetime, dict[str, Any]]] = []
    for i, review in enumerate(pr.pull.reviews):
        items.append(
            (
                review.at,
                {
                    "__typename": "PullRequestReview",
                    "id": f"PRR_{base}_{i}",
                    "state": review.state.value,
                    "author": _actor(review.author),
                    "submittedAt": _time(review.at),
                },
            )
        )
    for i, event in enumerate(pr.pull.events):
        typename = _EVENT_TYPES.get(event.kind)
        if typename is not None:
            items.append(
                (
                    event.at,
                    {
                        "__typename": typename,
                        "id": f"EV_{base}_{i}",
                        "createdAt": _time(event.at),
                        "actor": _actor(event.actor),
                    },
                )
            )
    items.sort(key=lambda item: item[0])
    nodes = [node for _, node in items if node["__typename"] in wanted]
    total = len(nodes)
    page = nodes[:size] if from_start else nodes[max(0, total - size) :]
    return {
        "nodes": page,
        "totalCount": total,
        "pageInfo": {
            "hasNextPage": from_start and total > size,
            "hasPreviousPage": not from_start and total > size,
            "startCursor": None,
            "endCursor": None,
        },
    }


def _pr_url(pr: _PR, info: GraphQLResolveInfo[Any]) -> str:
    return f"{info.context['base']}/{pr.repo.full_name}/pull/{pr.pull.number}"


def _pr_state(pr: _PR, _info: GraphQLResolveInfo[Any]) -> str:
    state = pr.pull.state
    if state in (HostPullState.CLOSED, HostPullState.MERGED):
        return state.value
    return "OPEN"


_REPOSITORY_FIELDS: dict[str, Any] = {
    "id": lambda r, _i: f"R_{r.id}",
    "databaseId": lambda r, _i: r.id,
    "name": lambda r, _i: r.name,
    "nameWithOwner": lambda r, _i: r.full_name,
    "isArchived": lambda r, _i: r.archived,
    "isFork": lambda r, _i: r.fork,
    "isPrivate": lambda r, _i: r.private,
    "url": lambda r, i: f"{i.context['base']}/{r.full_name}",
    "pullRequest": _pull_request,
}
_PULL_FIELDS: dict[str, Any] = {
    "id": lambda p, _i: f"PR_{p.repo.id}_{p.pull.number}",
    "number": lambda p, _i: p.pull.number,
    "title": lambda p, _i: p.pull.title,
    "body": lambda p, _i: p.pull.body,
    "url": _pr_url,
    "state": _pr_state,
    "isDraft": lambda p, _i: p.pull.state is HostPullState.DRAFT,
    "additions": lambda p, _i: p.pull.additions,
    "deletions": lambda p, _i: p.pull.deletions,
    "headRefName": lambda p, _i: p.pull.head_ref,
    "baseRefName": lambda p, _i: p.pull.base_ref,
    "createdAt": lambda p, _i: _time(p.pull.created_at),
    "updatedAt": lambda p, _i: _time(p.pull.updated_at),
    "closedAt": lambda p, _i: _time(p.pull.closed_at),
    "mergedAt": lambda p, _i: _time(p.pull.merged_at),
    "reviewDecision": lambda p, _i: review_decision(p.repo, p.pull),
    "latestOpinionatedReviews": _latest_reviews,
    "author": lambda p, _i: _actor(p.pull.author),
    "repository": lambda p, _i: p.repo,
    "commits": _commits,
    "timelineItems": _timeline,
}


def build_github_schema() -> GraphQLSchema:
    """Build the schema from SDL and attach the resolvers (the mutations' are in
    ``github_mutations``)."""
    from repo_updater.emulator import github_mutations  # it builds on this module

    schema = build_schema(SDL + github_mutations.MUTATION_SDL)
    github_mutations.attach(schema)

    def object_type(name: str) -> GraphQLObjectType:
        t = schema.get_type(name)
        assert isinstance(t, GraphQLObjectType)
        return t

    query = object_type("Query")
    query.fields["repository"].resolve = _repository
    query.fields["rateLimit"].resolve = _rate_limit
    for name, resolver in _REPOSITORY_FIELDS.items():
        object_type("Repository").fields[name].resolve = resolver
    for name, resolver in _PULL_FIELDS.items():
        object_type("PullRequest").fields[name].resolve = resolver
    union = schema.get_type("PullRequestTimelineItems")
    actor = schema.get_type("Actor")
    assert isinstance(union, GraphQLUnionType) and isinstance(actor, GraphQLInterfaceType)
    union.resolve_type = lambda value, _info, _type: value["__typename"]
    actor.resolve_type = lambda value, _info, _type: value["__typename"]
    return schema


class GraphQLEndpoint:
    """The aiohttp handler for ``POST /graphql`` of one host."""

    def __init__(self, host: HostState) -> None:
        self.host = host
        self.schema = build_github_schema()
        self._documents: OrderedDict[str, DocumentNode | list[GraphQLError]] = OrderedDict()

    def _document(self, query: str) -> DocumentNode | list[GraphQLError]:
        cached = self._documents.get(query)
        if cached is not None:
            self._documents.move_to_end(query)
            return cached
        try:
            document = parse(query)
        except GraphQLError as error:
            result: DocumentNode | list[GraphQLError] = [error]
        else:
            errors = validate(self.schema, document)
            result = errors if errors else document
        self._documents[query] = result
        if len(self._documents) > _DOCUMENT_CACHE_SIZE:
            self._documents.popitem(last=False)
        return result

    async def handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _json({"message": "Problems parsing JSON"}, status=400)
        query = body.get("query") if isinstance(body, dict) else None
        if not isinstance(query, str):
            return _json(
                {"message": "A query attribute must be specified and must be a string."},
                status=400,
            )
        variables = body.get("variables")
        document = self._document(query)
        if isinstance(document, list):
            return _json({"errors": [e.formatted for e in document]})
        base = f"{request.scheme}://{request.host}/github"
        result = execute_sync(
            self.schema,
            document,
            context_value={"host": self.host, "base": base},
            variable_values=variables if isinstance(variables, dict) else None,
            operation_name=body.get("operationName"),
        )
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [_format_error(e) for e in result.errors]
        return _json(out)


def _format_error(error: GraphQLError) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    if isinstance(error.original_error, NotFoundError):
        formatted = {"type": "NOT_FOUND", **formatted}
    elif isinstance(error.original_error, ForbiddenError):
        formatted = {"type": "FORBIDDEN", **formatted, "extensions": {"saml_failure": True}}
    elif isinstance(kind := getattr(error.original_error, "graphql_type", None), str):
        formatted = {"type": kind, **formatted}  # the mutations' errors (UNPROCESSABLE, ...)
    return formatted


def _json(body: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, separators=(",", ":")), status=status, content_type="application/json"
    )
