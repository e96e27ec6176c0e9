"""GitLab REST v4 emulator routes (mounted under ``/gitlab``; API under ``/api/v4``).

Modelled: group project listing (``include_subgroups``, offset pagination with GitLab's
``Link``/``X-*`` headers, ``X-Total`` omitted above 10,000 like GitLab; ``Link`` URLs carry the
host and port of ``settings.external_url`` like GitLab's ``gitlab.host``), single projects by
id or URL-encoded path, merge requests (batched ``iids[]`` listing, single GET), MR reviewers
(``state``: unreviewed, reviewed, requested_changes, approved, unapproved) and MR approvals.
The write routes (create, update, merge, notes) are in ``gitlab_writes``; writes to archived
projects answer ``403 {"message": "403 Forbidden"}`` as GitLab does: the body does not say why.
``detailed_merge_status`` is CE's (no ``requested_changes``, which only EE reports).

Like GitLab, the MR *list* leaves ``head_pipeline`` out (only the single-MR GET has it);
``build_app(state, list_pipelines=True)`` puts it in (fewer requests, not GitLab's behaviour).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from repo_updater.core.domain import CheckState, HostKind, HostPullState, ReviewState
from repo_updater.emulator import permissions
from repo_updater.emulator.faults import fault_middleware
from repo_updater.emulator.listing import (
    int_param,
    iso,
    link_header,
    page_url,
)
from repo_updater.emulator.state import (
    EmulatedPull,
    EmulatedRepo,
    EmulatedReview,
    EmulatorState,
    HostState,
)

API = "/api/v4"
MAX_PER_PAGE = 100
TOTAL_HEADERS_LIMIT = 10_000
DRAFT_PREFIXES = ("draft:", "[draft]", "(draft)", "wip:", "[wip]")

_PIPELINE_STATUS = {
    CheckState.PENDING: "running",
    CheckState.PASSED: "success",
    CheckState.FAILED: "failed",
}
_STATE = {
    HostPullState.OPEN: "opened",
    HostPullState.DRAFT: "opened",
    HostPullState.CLOSED: "closed",
    HostPullState.MERGED: "merged",
}


def _repos_fingerprint(host: HostState) -> tuple[int, int, str]:
    """Changes whenever a repo is added, deleted, renamed or moved, in O(1): ids are never
    reused (an add moves the last id), a delete shrinks the count, a rename re-inserts its new
    full name at the end of ``by_full_name``."""
    if not host.repos:
        return (0, 0, "")
    return (len(host.repos), next(reversed(host.repos)), next(reversed(host.by_full_name)))


# MergeRequestReviewer#state, by each reviewer's latest review.
_REVIEWER_STATE = {
    ReviewState.PENDING: "unreviewed",
    ReviewState.COMMENTED: "reviewed",
    ReviewState.CHANGES_REQUESTED: "requested_changes",
    ReviewState.APPROVED: "approved",
    ReviewState.DISMISSED: "unapproved",
}


def _latest_reviews(pull: EmulatedPull) -> dict[str, EmulatedReview]:
    latest: dict[str, EmulatedReview] = {}
    for review in pull.reviews:
        latest[review.author] = review
    return latest


def _user(username: str) -> dict[str, Any]:
    ident = zlib.crc32(username.encode()) % 100_000  # stable across runs, unlike hash()
    return {"id": ident, "username": username, "name": username, "state": "active"}


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


class _GitLab:
    def __init__(self, host: HostState, *, list_pipelines: bool) -> None:
        self.host = host
        self.list_pipelines = list_pipelines
        # ``HostState.owner_repos`` caches single owners but rebuilds subgroup listings per
        # call; a 100k-repo group paged 100 at a time needs them cached too.
        self._subgroups: dict[str, Sequence[EmulatedRepo]] = {}
        self._subgroups_key: tuple[int, int, str] | None = None

    def group_repos(self, group: str, *, include_subgroups: bool) -> Sequence[EmulatedRepo]:
        if not include_subgroups:
            return self.host.owner_repos(group)
        key = _repos_fingerprint(self.host)
        if key != self._subgroups_key:
            self._subgroups, self._subgroups_key = {}, key
        hit = self._subgroups.get(group)
        if hit is None:
            hit = self._subgroups[group] = self.host.owner_repos(group, include_subgroups=True)
        return hit

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def root(request: web.Request) -> str:
        raw = request.raw_path
        return str(request.url.origin()) + raw[: raw.index(API)]

    def project(self, ref: str) -> EmulatedRepo | None:
        """By id or path; an old path of a renamed project still finds it (GitLab's
        ``find_by_full_path(..., follow_redirects: true)``, no HTTP redirect)."""
        if ref.isdigit():
            return self.host.repos.get(int(ref))
        return self.host.resolve_repo(ref)

    def project_json(self, repo: EmulatedRepo, root: str) -> dict[str, Any]:
        full = repo.full_name
        data: dict[str, Any] = {
            "id": repo.id,
            "description": repo.description,
            "name": repo.name,
            "name_with_namespace": full.replace("/", " / "),
            "path": repo.name,
            "path_with_namespace": full,
            "created_at": iso(repo.created_at, millis=True),
            "last_activity_at": iso(repo.updated_at, millis=True),
            "default_branch": repo.default_branch,
            "visibility": "private" if repo.private else "public",
            "archived": repo.archived,
            "web_url": f"{root}/{full}",
            "http_url_to_repo": f"{root}/{full}.git",
            "ssh_url_to_repo": f"git@{root.split('://', 1)[-1].split('/', 1)[0]}:{full}.git",
            "namespace": {
                "name": repo.owner.rsplit("/", 1)[-1],
                "path": repo.owner.rsplit("/", 1)[-1],
                "kind": "group",
                "full_path": repo.owner,
            },
            "empty_repo": False,
        }
        if repo.fork:
            # The emulator does not track fork parents; GitLab sends the parent project here.
            data["forked_from_project"] = {"id": 0, "path_with_namespace": f"upstream/{repo.name}"}
        return data

    def mr_json(
        self, repo: EmulatedRepo, pull: EmulatedPull, root: str, *, pipeline: bool
    ) -> dict[str, Any]:
        draft = pull.state is HostPullState.DRAFT
        if pull.state not in (HostPullState.OPEN, HostPullState.DRAFT):
            merge_status = "not_open"
        elif draft:
            merge_status = "draft_status"
        elif pull.check_state is CheckState.PENDING:
            merge_status = "ci_still_running"
        else:
            merge_status = "mergeable"
        data: dict[str, Any] = {
            "id": repo.id * 100_000 + pull.number,
            "iid": pull.number,
            "project_id": repo.id,
            "title": pull.title,
            "description": pull.body,
            "state": _STATE[pull.state],
            "draft": draft,
            "work_in_progress": draft,
            "created_at": iso(pull.created_at, millis=True),
            "updated_at": iso(pull.updated_at, millis=True),
            "merged_at": iso(pull.merged_at, millis=True),
            "closed_at": iso(pull.closed_at, millis=True),
            "source_branch": pull.head_ref,
            "target_branch": pull.base_ref,
            "source_project_id": repo.id,
            "target_project_id": repo.id,
            "author": {"username": pull.author},
            "detailed_merge_status": merge_status,
            "web_url": f"{root}/{repo.full_name}/-/merge_requests/{pull.number}",
            "references": {"short": f"!{pull.number}", "full": f"{repo.full_name}!{pull.number}"},
        }
        if pipeline:
            status = _PIPELINE_STATUS.get(pull.check_state)
            data["head_pipeline"] = (
                None if status is None else {"id": pull.number, "status": status}
            )
        return data

    # --- projects ---------------------------------------------------------------------------

    async def group_projects(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        subgroups = request.query.get("include_subgroups", "false").lower() == "true"
        repos = self.group_repos(group, include_subgroups=subgroups)
        if group not in self.host.owners:  # a group whose projects are all gone lists []
            return _error(404, "404 Group Not Found")
        per_page = int_param(request, "per_page", 20, lo=1, hi=MAX_PER_PAGE)
        page = int_param(request, "page", 1, lo=1, hi=1 << 30)
        total = len(repos)
        last = max(1, -(-total // per_page))
        root = self.root(request)
        start = (page - 1) * per_page
        body = [self.project_json(r, root) for r in repos[start : start + per_page]]
        external = self.host.settings.external_url

        def link(n: int) -> str:
            return page_url(request, external=external, keep_scheme=True, page=n, per_page=per_page)

        links = {"first": link(1)}
        headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Next-Page": ""}
        headers["X-Prev-Page"] = str(page - 1) if page > 1 else ""
        if page < last:
            headers["X-Next-Page"] = str(page + 1)
            links["next"] = link(page + 1)
        if page > 1:
            links["prev"] = link(page - 1)
        if total <= TOTAL_HEADERS_LIMIT:
            headers["X-Total"] = str(total)
            headers["X-Total-Pages"] = str(last)
            links["last"] = link(last)
        if self.host.faults.drop_link_next > 0:
            self.host.faults.drop_link_next -= 1
        else:
            headers["Link"] = link_header(links)
        return web.json_response(body, headers=headers)

    async def get_project(self, request: web.Request) -> web.Response:
        repo = self.project(request.match_info["project"])
        if repo is None:
            return _error(404, "404 Project Not Found")
        return web.json_response(self.project_json(repo, self.root(request)))

    # --- merge requests ---------------------------------------------------------------------

    async def list_mrs(self, request: web.Request) -> web.Response:
        repo = self.project(request.match_info["project"])
        if repo is None:
            return _error(404, "404 Project Not Found")
        state = request.query.get("state", "all")
        iids = request.query.getall("iids[]", [])
        if iids:
            pulls = [repo.pulls[int(i)] for i in iids if i.isdigit() and int(i) in repo.pulls]
        else:
            pulls = list(repo.pulls.values())
        if state != "all":
            pulls = [p for p in pulls if _STATE[p.state] == state]
        source_branch = request.query.get("source_branch")
        if source_branch is not None:
            pulls = [p for p in pulls if p.head_ref == source_branch]
        pulls.sort(key=lambda p: p.number, reverse=True)
        per_page = int_param(request, "per_page", 20, lo=1, hi=MAX_PER_PAGE)
        page = int_param(request, "page", 1, lo=1, hi=1 << 30)
        start = (page - 1) * per_page
        chunk = pulls[start : start + per_page]
        root = self.root(request)
        body = [self.mr_json(repo, p, root, pipeline=self.list_pipelines) for p in chunk]
        headers = {"X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(pulls))}
        headers["X-Next-Page"] = str(page + 1) if start + per_page < len(pulls) else ""
        if headers["X-Next-Page"]:
            external = self.host.settings.external_url
            url = page_url(request, external=external, keep_scheme=True, page=page + 1)
            headers["Link"] = link_header({"next": url})
        return web.json_response(body, headers=headers)

    def _mr(self, request: web.Request) -> tuple[EmulatedRepo, EmulatedPull] | web.Response:
        repo = self.project(request.match_info["project"])
        if repo is None:
            return _error(404, "404 Project Not Found")
        iid = request.match_info["iid"]
        pull = repo.pulls.get(int(iid)) if iid.isdigit() else None
        if pull is None:
            return _error(404, "404 Not found")
        return repo, pull

    async def get_mr(self, request: web.Request) -> web.Response:
        found = self._mr(request)
        if isinstance(found, web.Response):
            return found
        repo, pull = found
        return web.json_response(self.mr_json(repo, pull, self.root(request), pipeline=True))

    async def reviewers(self, request: web.Request) -> web.Response:
        """``MergeRequestReviewer`` entities: each reviewer's user and review ``state``."""
        found = self._mr(request)
        if isinstance(found, web.Response):
            return found
        _, pull = found
        body = [
            {
                "user": _user(author),
                "state": _REVIEWER_STATE[review.state],
                "created_at": iso(review.at, millis=True),
            }
            for author, review in _latest_reviews(pull).items()
        ]
        return web.json_response(body, headers={"X-Total": str(len(body))})

    async def approvals(self, request: web.Request) -> web.Response:
        found = self._mr(request)
        if isinstance(found, web.Response):
            return found
        _, pull = found
        by = [
            {"user": _user(author)}
            for author, review in _latest_reviews(pull).items()
            if review.state is ReviewState.APPROVED
        ]
        return web.json_response(
            {"iid": pull.number, "approved": bool(by), "approved_by": by, "approvals_left": 0}
        )


def build_app(state: EmulatorState, *, list_pipelines: bool = False) -> web.Application:
    """The GitLab sub-application. ``list_pipelines=True`` puts ``head_pipeline`` in MR lists,
    which real GitLab does not."""
    host = state.host(HostKind.GITLAB)
    gl = _GitLab(host, list_pipelines=list_pipelines)
    app = web.Application(middlewares=[fault_middleware(host, "gitlab")])
    mr = API + "/projects/{project}/merge_requests"
    app.router.add_get(API + "/groups/{group}/projects", gl.group_projects)
    app.router.add_get(API + "/projects/{project}", gl.get_project)
    app.router.add_get(mr, gl.list_mrs)
    app.router.add_get(mr + "/{iid}", gl.get_mr)
    app.router.add_get(mr + "/{iid}/approvals", gl.approvals)
    app.router.add_get(mr + "/{iid}/reviewers", gl.reviewers)
    permissions.add_gitlab_routes(app, host, API, gl.project)
    from repo_updater.emulator import gitlab_writes  # it builds on this module's helpers

    gitlab_writes.add_routes(app, gl)
    from repo_updater.emulator import gitlab_files

    gitlab_files.add_routes(app, gl)  # repository files and commits
    return app
