"""A small async client for the emulator's admin API (``/_admin``, see ``admin``).

async with EmulatorAdmin("http://127.0.0.1:7700") as admin:
    await admin.archive("github", "acme/widgets")
    await admin.set_faults("github", errors_next=2)
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

import httpx

from repo_updater.core.domain import HostKind


class EmulatorAdminError(Exception):
    """The admin API refused a request; ``str()`` is the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class EmulatorAdmin:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=f"{self.url}/_admin", timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> EmulatorAdmin:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(
        self,
        method: str,
        kind: HostKind | str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        url = f"/{kind}/{path}"  # HostKind is a StrEnum: its str() is its value
        try:
            response = await self._client.request(method, url, json=body, params=params)
        except httpx.HTTPError as error:
            raise EmulatorAdminError(0, f"emulator at {self.url} unreachable: {error}") from None
        try:
            payload = response.json()
        except json.JSONDecodeError:
            payload = None
        if response.is_success:
            return payload
        message = payload.get("error") if isinstance(payload, dict) else None
        raise EmulatorAdminError(
            response.status_code, message or f"HTTP {response.status_code}: {response.text[:200]}"
        )

    # --- repos -----------------------------------------------------------------------------

    async def repos(self, kind: HostKind | str, owner: str | None = None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call(
            "GET", kind, "repos", params={"owner": owner} if owner else None
        )
        return result

    async def add_repo(
        self,
        kind: HostKind | str,
        owner: str,
        name: str,
        *,
        archived: bool = False,
        fork: bool = False,
        private: bool = False,
        description: str = "",
        owner_type: str = "org",
        review_required: bool = False,
    ) -> dict[str, Any]:
        body = {
            "owner": owner,
            "name": name,
            "archived": archived,
            "fork": fork,
            "private": private,
            "description": description,
            "owner_type": owner_type,
            "review_required": review_required,
        }
        result: dict[str, Any] = await self._call("POST", kind, "repos", body)
        return result

    async def _repo_action(
        self, kind: HostKind | str, repo: str, action: str, new_name: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"repo": repo, "action": action}
        if new_name is not None:
            body["new_name"] = new_name
        result: dict[str, Any] = await self._call("POST", kind, "repo-actions", body)
        return result

    async def archive(self, kind: HostKind | str, repo: str) -> dict[str, Any]:
        return await self._repo_action(kind, repo, "archive")

    async def unarchive(self, kind: HostKind | str, repo: str) -> dict[str, Any]:
        return await self._repo_action(kind, repo, "unarchive")

    async def rename(self, kind: HostKind | str, repo: str, new_name: str) -> dict[str, Any]:
        return await self._repo_action(kind, repo, "rename", new_name)

    async def delete(self, kind: HostKind | str, repo: str) -> dict[str, Any]:
        return await self._repo_action(kind, repo, "delete")

    # --- pull requests ---------------------------------------------------------------------

    async def pulls(self, kind: HostKind | str, repo: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", kind, "pulls", params={"repo": repo})
        return result

    async def add_pull(
        self,
        kind: HostKind | str,
        repo: str,
        title: str,
        *,
        state: str = "OPEN",
        head_ref: str | None = None,
        base_ref: str = "main",
        body: str = "",
        check_state: str | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "repo": repo,
            "title": title,
            "state": str(state),
            "base_ref": base_ref,
            "body": body,
        }
        if head_ref is not None:
            payload["head_ref"] = head_ref
        if check_state is not None:
            payload["check_state"] = str(check_state)
        result: dict[str, Any] = await self._call("POST", kind, "pulls", payload)
        return result

    async def set_pull(
        self,
        kind: HostKind | str,
        repo: str,
        number: int,
        *,
        state: str | None = None,
        check_state: str | None = None,
        review: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Change a pull request; ``review`` is ``(author, ReviewState)``; ``state="DELETED"``
        removes it."""
        payload: dict[str, Any] = {"repo": repo, "number": number}
        if state is not None:
            payload["state"] = str(state)
        if check_state is not None:
            payload["check_state"] = str(check_state)
        if review is not None:
            payload["review"] = {"author": review[0], "state": str(review[1])}
        result: dict[str, Any] = await self._call("POST", kind, "pull-actions", payload)
        return result

    # --- faults, token, seed, stats --------------------------------------------------------

    async def faults(self, kind: HostKind | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", kind, "faults")
        return result

    async def set_faults(self, kind: HostKind | str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PUT", kind, "faults", fields)
        return result

    async def clear_faults(self, kind: HostKind | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", kind, "faults")
        return result

    async def set_token(self, kind: HostKind | str, token: str | None) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PUT", kind, "token", {"token": token})
        return result

    async def settings(self, kind: HostKind | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", kind, "settings")
        return result

    async def set_settings(self, kind: HostKind | str, **fields: Any) -> dict[str, Any]:
        """Change ``external_url`` (where the host's paging links point) or ``viewer``
        (GitHub's token user); ``None`` clears one."""
        result: dict[str, Any] = await self._call("PUT", kind, "settings", fields)
        return result

    async def seed(
        self,
        kind: HostKind | str,
        *,
        orgs: int = 1,
        repos_per_org: int = 10,
        pulls_per_repo: int = 0,
        org_prefix: str = "org",
    ) -> dict[str, Any]:
        body = {
            "orgs": orgs,
            "repos_per_org": repos_per_org,
            "pulls_per_repo": pulls_per_repo,
            "org_prefix": org_prefix,
        }
        result: dict[str, Any] = await self._call("POST", kind, "seed", body)
        return result

    async def stats(self, kind: HostKind | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", kind, "stats")
        return result

    async def reset_stats(self, kind: HostKind | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", kind, "stats")
        return result

    # --- who has access, visibility (``admin_permissions``) ---------------------------------

    async def collaborators(self, kind: HostKind | str, repo: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "GET", kind, "collaborators", params={"repo": repo}
        )
        return result

    async def set_collaborator(
        self, kind: HostKind | str, repo: str, login: str, permission: str | None
    ) -> dict[str, Any]:
        """Add or change a collaborator (``permission``: guest, read, triage, write,
        maintain, admin); ``None`` removes them."""
        body = {"repo": repo, "login": login, "permission": permission}
        result: dict[str, Any] = await self._call("POST", kind, "collaborators", body)
        return result

    async def set_visibility(
        self, kind: HostKind | str, repo: str, private: bool
    ) -> dict[str, Any]:
        body = {"repo": repo, "private": private}
        result: dict[str, Any] = await self._call("POST", kind, "visibility", body)
        return result

    async def set_group(
        self, kind: HostKind | str, name: str, members: list[str]
    ) -> dict[str, Any]:
        body = {"name": name, "members": members}
        result: dict[str, Any] = await self._call("PUT", kind, "groups", body)
        return result

    async def set_group_access(
        self, kind: HostKind | str, repo: str, group: str, permission: str | None
    ) -> dict[str, Any]:
        body = {"repo": repo, "group": group, "permission": permission}
        result: dict[str, Any] = await self._call("POST", kind, "group-access", body)
        return result

    async def set_owner_member(
        self, kind: HostKind | str, owner: str, login: str, permission: str | None
    ) -> dict[str, Any]:
        body = {"owner": owner, "login": login, "permission": permission}
        result: dict[str, Any] = await self._call("POST", kind, "owner-members", body)
        return result

    # --- webhooks (admin_webhooks) ------------------------------------------------------------

    async def add_webhook(self, kind: HostKind | str, url: str, secret: str) -> dict[str, Any]:
        body = {"url": url, "secret": secret}
        result: dict[str, Any] = await self._call("POST", kind, "webhooks", body)
        return result

    async def webhooks(self, kind: HostKind | str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", kind, "webhooks")
        return result

    async def clear_webhooks(self, kind: HostKind | str) -> None:
        await self._call("DELETE", kind, "webhooks")

    async def set_webhook_faults(self, kind: HostKind | str, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("PUT", kind, "webhook-faults", fields)
        return result

    async def webhook_deliveries(self, kind: HostKind | str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", kind, "webhook-deliveries")
        return result
