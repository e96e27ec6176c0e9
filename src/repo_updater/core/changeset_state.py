"""Pure rules for a changeset's state: what we show, derived from what the code host says and
whether the repository is archived. No I/O.

An open or draft pull request on an archived repository is READONLY: nobody can push to it,
merge it or close it. CLOSED, MERGED and DELETED describe something that already happened and
stay as they are (Sourcegraph shows those as READONLY too; we keep what happened, by design).
Unarchived, a changeset goes back to what the host last said.
"""

from __future__ import annotations

from datetime import datetime

from repo_updater.core.domain import ChangesetSnapshot, ExternalState, HostPullState

# Host states that become READONLY while the repository is archived.
READONLY_WHEN_ARCHIVED: frozenset[HostPullState] = frozenset(
    {HostPullState.OPEN, HostPullState.DRAFT}
)

TERMINAL_STATES: frozenset[ExternalState] = frozenset(
    {ExternalState.MERGED, ExternalState.CLOSED, ExternalState.DELETED}
)

_HOST_TO_EXTERNAL: dict[HostPullState, ExternalState] = {
    HostPullState.OPEN: ExternalState.OPEN,
    HostPullState.DRAFT: ExternalState.DRAFT,
    HostPullState.CLOSED: ExternalState.CLOSED,
    HostPullState.MERGED: ExternalState.MERGED,
    HostPullState.DELETED: ExternalState.DELETED,
}


def derive_external_state(host_state: HostPullState, repo_archived: bool) -> ExternalState:
    """Our state for a changeset: what the host says, except that an open or draft pull
    request on an archived repository is READONLY."""
    if repo_archived and host_state in READONLY_WHEN_ARCHIVED:
        return ExternalState.READONLY
    return _HOST_TO_EXTERNAL[host_state]


def is_terminal(state: ExternalState | HostPullState | None) -> bool:
    return state is not None and ExternalState(state.value) in TERMINAL_STATES


def last_change(snapshot: ChangesetSnapshot) -> datetime | None:
    """The newest moment the host reports something happening to the changeset: its
    ``updated_at`` or its newest timeline event."""
    moments = [e.at for e in snapshot.events]
    if snapshot.updated_at is not None:
        moments.append(snapshot.updated_at)
    return max(moments, default=None)
