"""GitHub GraphQL mutations the emulator serves: ``markPullRequestReadyForReview`` and
``convertPullRequestToDraft``, named and typed as in GitHub's public schema
(``octokit/graphql-schema``: ``MarkPullRequestReadyForReviewInput``,
``ConvertPullRequestToDraftInput``, payloads with ``clientMutationId`` and ``pullRequest``).

A mutation on an archived repository fails like GitHub's: data null and an error of type
``UNPROCESSABLE`` saying "Repository was archived so is read-only." (HTTP 200, as GraphQL
answers). Converting to draft where drafts are not supported is ``UNPROCESSABLE`` too.
"""

from __future__ import annotations

import re
from typing import Any

from graphql import GraphQLObjectType, GraphQLResolveInfo, GraphQLSchema

from repo_updater.core.domain import HostPullState
from repo_updater.emulator import merge_rules
from repo_updater.emulator.github_graphql import _PR
from repo_updater.emulator.github_schema import MUTATION_SDL
from repo_updater.emulator.state import EmulatedPull, EmulatedRepo, HostState

__all__ = ["MUTATION_SDL", "attach"]


ARCHIVED = "Repository was archived so is read-only."
_NODE = re.compile(r"^PR_(\d+)_(\d+)$")  # the emulator's pull request node ids


class UnprocessableError(Exception):
    """GitHub's ``UNPROCESSABLE`` GraphQL error."""

    graphql_type = "UNPROCESSABLE"


class NodeNotFoundError(Exception):
    graphql_type = "NOT_FOUND"


def _pull(host: HostState, node_id: str) -> tuple[EmulatedRepo, EmulatedPull]:
    match = _NODE.match(node_id)
    repo = host.repos.get(int(match.group(1))) if match else None
    pull = repo.pulls.get(int(match.group(2))) if repo is not None and match else None
    if repo is None or pull is None:
        raise NodeNotFoundError(f"Could not resolve to a node with the global id of '{node_id}'")
    return repo, pull


def _set_draft(draft: bool, action: str) -> Any:
    def resolve(_root: Any, info: GraphQLResolveInfo[Any], input: dict[str, Any]) -> Any:
        host: HostState = info.context["host"]
        repo, pull = _pull(host, str(input["pullRequestId"]))
        try:
            if repo.archived:
                raise UnprocessableError(ARCHIVED)
            if draft and not host.writes.for_repo(repo.id).drafts:
                raise UnprocessableError(
                    "Draft pull requests are not supported in this repository."
                )
            if pull.state in (HostPullState.CLOSED, HostPullState.MERGED):
                raise UnprocessableError("Pull request is closed.")
        except UnprocessableError:
            merge_rules.log_write(host, action, repo, pull.number, 422)
            raise
        pull.state = HostPullState.DRAFT if draft else HostPullState.OPEN
        merge_rules.touch(pull)
        merge_rules.log_write(host, action, repo, pull.number, 200)
        return {"clientMutationId": input.get("clientMutationId"), "pullRequest": _PR(repo, pull)}

    return resolve


def attach(schema: GraphQLSchema) -> None:
    """Give the schema's ``Mutation`` fields their resolvers."""
    mutation = schema.get_type("Mutation")
    assert isinstance(mutation, GraphQLObjectType)
    mutation.fields["markPullRequestReadyForReview"].resolve = _set_draft(False, "ready")
    mutation.fields["convertPullRequestToDraft"].resolve = _set_draft(True, "draft")
