"""GitHub's write endpoints in the emulator (mounted by ``github.build_app``), after GitHub's
REST OpenAPI description and GraphQL schema (see /work/research/writes/REPORT.md, A.1, A.5,
A.6):

- ``POST /repos/{o}/{r}/pulls``: 201; 422 "A pull request already exists for o:branch." for a
  second open one on the same head; 422 "Draft pull requests are not supported in this
  repository." when the repository has no drafts (``RepoRules.drafts``);
- ``PATCH /repos/{o}/{r}/pulls/{n}``: state (open/closed), title, body, base; 200;
- ``PUT /repos/{o}/{r}/pulls/{n}/merge``: ``merge_method``; 200 ``{"sha", "merged": true,
  "message": "Pull Request successfully merged"}``; 405 "Pull Request is not mergeable" (closed,
  merged, draft, conflicts), 405 "<Method> are not allowed on this repository.", 405 for unmet
  branch protection ("At least N approving review(s) is required by reviewers with write
  access.", 'Required status check "ci" is expected.', wording as reported publicly);
- ``POST|GET /repos/{o}/{r}/issues/{n}/comments`` (``since``, ``per_page``, ``page``);
- GraphQL ``markPullRequestReadyForReview`` and ``convertPullRequestToDraft`` (resolvers in
  ``github_mutations``); this module wraps ``POST /graphql`` to count mutations as writes.

Every write counts against the host's secondary write limit (403 "You have exceeded a
secondary rate limit..." with ``Retry-After``) before anything else; REST writes to an archived
repository answer ``403 Repository was archived so is read-only.``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from graphql import GraphQLError, OperationType, parse

from repo_updater.core.domain import HostPullState
from repo_updater.emulator import merge_rules
from repo_updater.emulator.github import (
    ARCHIVED_MESSAGE,
    GHES_API,
    _GitHubRest,
    _json_object,
    _validation_failed,
    api_base,
    json_response,
    message,
    paginate,
    pull_json,
)
from repo_updater.emulator.github_graphql import GraphQLEndpoint, github_time
from repo_updater.emulator.merge_rules import Blocker
from repo_updater.emulator.state import EmulatedComment, EmulatedPull, EmulatedRepo

SECONDARY_LIMIT = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
)
DRAFTS_UNSUPPORTED = "Draft pull requests are not supported in this repository."
_METHOD_NAMES = {"merge": "Merge commits", "squash": "Squash merges", "rebase": "Rebase merges"}

Handler = Callable[[web.Request], Awaitable[web.Response]]


def add_routes(
    app: web.Application,
    api: _GitHubRest,
    graphql: GraphQLEndpoint,
    *,
    rest_roots: tuple[str, ...] = ("",),
) -> None:
    """The write routes under each REST root (``""``; GHES: ``/api/v3``), and the GraphQL
    endpoint at ``/graphql`` and GHES's ``/api/graphql``."""
    writes = _Writes(api)
    for root in rest_roots:
        for path in ("/repos/{owner}/{repo}", "/repositories/{id}"):
            repo = root + path
            app.router.add_post(repo + "/pulls", writes.create_pull)
            app.router.add_patch(repo + "/pulls/{number}", writes.update_pull)
            app.router.add_put(repo + "/pulls/{number}/merge", writes.merge_pull)
            app.router.add_post(repo + "/issues/{number}/comments", writes.add_comment)
            app.router.add_get(repo + "/issues/{number}/comments", writes.list_comments)
    handler = writes.graphql(graphql.handle)
    app.router.add_post("/graphql", handler)
    app.router.add_post("/api/graphql", handler)  # GHES


def _secondary_limit(retry_after: int) -> web.Response:
    response = message(403, SECONDARY_LIMIT)
    response.headers["Retry-After"] = str(retry_after)
    return response


def comment_json(comment: EmulatedComment, repo: EmulatedRepo, number: int, base: str) -> Any:
    """``base``: the REST root; the web URL drops a GHES ``/api/v3``."""
    web = base.removesuffix(GHES_API)
    return {
        "id": comment.id,
        "node_id": f"IC_{comment.id}",
        "body": comment.body,
        "user": {"login": comment.author},
        "created_at": github_time(comment.at),
        "updated_at": github_time(comment.at),
        "html_url": f"{web}/{repo.full_name}/pull/{number}#issuecomment-{comment.id}",
        "issue_url": f"{base}/repos/{repo.full_name}/issues/{number}",
    }


class _Writes:
    def __init__(self, api: _GitHubRest) -> None:
        self.api = api
        self.host = api.host

    def _refusal(self, repo: EmulatedRepo) -> web.Response | None:
        """The secondary limit, then the archive: what refuses any write first."""
        if merge_rules.over_limit(self.host):
            return _secondary_limit(self.host.writes.retry_after)
        if repo.archived:
            return message(403, ARCHIVED_MESSAGE)
        return None

    def _done(
        self, action: str, repo: EmulatedRepo, number: int | None, response: web.Response
    ) -> web.Response:
        merge_rules.log_write(self.host, action, repo, number, response.status)
        return response

    async def create_pull(self, request: web.Request) -> web.Response:
        repo = self.api._repo(request)
        if isinstance(repo, web.Response):
            return repo
        answer = self._refusal(repo) or await self._create(request, repo)
        return self._done("create", repo, None, answer)

    async def _create(self, request: web.Request, repo: EmulatedRepo) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return message(400, "Problems parsing JSON")
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        missing = [
            f
            for f, v in (("title", title), ("head", head), ("base", base))
            if not isinstance(v, str) or not v
        ]
        if missing:
            return _validation_failed(f"missing field(s): {', '.join(missing)}")
        assert isinstance(title, str) and isinstance(head, str) and isinstance(base, str)
        head_ref = head.partition(":")[2] if ":" in head else head
        for pull in repo.pulls.values():
            if pull.head_ref == head_ref and pull.state in (
                HostPullState.OPEN,
                HostPullState.DRAFT,
            ):
                return _validation_failed(
                    f"A pull request already exists for {repo.owner}:{head_ref}."
                )
        draft = body.get("draft") is True
        if draft and not self.host.writes.for_repo(repo.id).drafts:
            return _validation_failed(DRAFTS_UNSUPPORTED)
        text = body.get("body")
        pull = self.host.add_pull(
            repo.full_name,
            title=title,
            state=HostPullState.DRAFT if draft else HostPullState.OPEN,
            head_ref=head_ref,
            base_ref=base,
            body=text if isinstance(text, str) else "",
        )
        return json_response(pull_json(repo, pull, api_base(request)), status=201)

    async def update_pull(self, request: web.Request) -> web.Response:
        found = self.api._pull(request)
        if isinstance(found, web.Response):
            return found
        repo, pull = found
        answer = self._refusal(repo) or await self._update(request, repo, pull)
        return self._done("update", repo, pull.number, answer)

    async def _update(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return message(400, "Problems parsing JSON")
        wanted = body.get("state")
        if wanted is not None and wanted not in ("open", "closed"):
            return _validation_failed("state must be 'open' or 'closed'")
        if wanted is not None and pull.state is HostPullState.MERGED:
            return _validation_failed("Cannot change the state of a merged pull request.")
        for field, attr in (("title", "title"), ("body", "body"), ("base", "base_ref")):
            value = body.get(field)
            if isinstance(value, str):
                setattr(pull, attr, value)
                merge_rules.touch(pull)
        if wanted == "closed" and pull.state is not HostPullState.CLOSED:
            self.host.set_pull_state(repo.full_name, pull.number, HostPullState.CLOSED)
        elif wanted == "open" and pull.state is HostPullState.CLOSED:
            self.host.set_pull_state(repo.full_name, pull.number, HostPullState.OPEN)
        return json_response(pull_json(repo, pull, api_base(request)))

    async def merge_pull(self, request: web.Request) -> web.Response:
        found = self.api._pull(request)
        if isinstance(found, web.Response):
            return found
        repo, pull = found
        answer = self._refusal(repo) or await self._merge(request, repo, pull)
        return self._done("merge", repo, pull.number, answer)

    async def _merge(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return message(400, "Problems parsing JSON")
        method = body.get("merge_method", "merge")
        if method not in _METHOD_NAMES:
            return _validation_failed("merge_method must be merge, squash or rebase")
        rules = self.host.writes.for_repo(repo.id)
        check = merge_rules.merge_check(pull, rules, method)
        if check.blocker is Blocker.METHOD:
            return message(405, f"{_METHOD_NAMES[method]} are not allowed on this repository.")
        if check.blocker is Blocker.APPROVALS:
            n = rules.required_approvals
            review = "review is" if n == 1 else "reviews are"
            return message(
                405, f"At least {n} approving {review} required by reviewers with write access."
            )
        if check.blocker is Blocker.CHECKS:
            return message(405, 'Required status check "ci" is expected.')
        if not check.ok:
            return message(405, "Pull Request is not mergeable")
        merge_rules.merge(self.host, repo, pull)
        sha = f"{repo.id:08x}{pull.number:032x}"
        return json_response(
            {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}
        )

    async def add_comment(self, request: web.Request) -> web.Response:
        found = self.api._pull(request)
        if isinstance(found, web.Response):
            return found
        repo, pull = found
        answer = self._refusal(repo) or await self._comment(request, repo, pull)
        return self._done("comment", repo, pull.number, answer)

    async def _comment(
        self, request: web.Request, repo: EmulatedRepo, pull: EmulatedPull
    ) -> web.Response:
        body = await _json_object(request)
        text = None if body is None else body.get("body")
        if not isinstance(text, str) or not text:
            return _validation_failed("body is missing")
        comment = merge_rules.add_comment(pull, text)
        base = api_base(request)
        return json_response(comment_json(comment, repo, pull.number, base), status=201)

    async def list_comments(self, request: web.Request) -> web.Response:
        found = self.api._pull(request)
        if isinstance(found, web.Response):
            return found
        repo, pull = found
        since = request.query.get("since")
        comments = [c for c in pull.comments if since is None or (github_time(c.at) or "") >= since]
        chunk, link = paginate(request, comments)
        base = api_base(request)
        response = json_response([comment_json(c, repo, pull.number, base) for c in chunk])
        if link:
            response.headers["Link"] = link
        return response

    def graphql(self, handle: Handler) -> Handler:
        """``POST /graphql``: a mutation is a write (secondary limit first), then GraphQL."""

        async def handler(request: web.Request) -> web.Response:
            if _is_mutation(await _json_object(request)) and merge_rules.over_limit(self.host):
                return _secondary_limit(self.host.writes.retry_after)
            return await handle(request)

        return handler


def _is_mutation(body: dict[str, Any] | None) -> bool:
    query = None if body is None else body.get("query")
    if not isinstance(query, str) or "mutation" not in query:
        return False
    try:
        document = parse(query)
    except GraphQLError:
        return False
    return any(
        getattr(d, "operation", None) is OperationType.MUTATION for d in document.definitions
    )
