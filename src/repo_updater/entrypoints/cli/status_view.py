"""``batch-changes status``: a batch change as text (counts, a burndown drawn with letters,
what needs action) or as JSON. Pure rendering of values the command loaded."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime

from repo_updater.core.burndown import STATES
from repo_updater.entrypoints.cli.output import relative
from repo_updater.entrypoints.render import json_default
from repo_updater.service_layer.batch_change_stats import BatchChangeStats
from repo_updater.store.changeset_queries import BatchChangeView, ChangesetView

SHOWN = 10  # changesets listed under "needs action"
BAR = 40  # characters of the widest burndown bar
# One letter per band, bottom to top as the dashboard stacks them.
LETTERS = {"UNSYNCED": "u", "DRAFT": "d", "OPEN": "o", "READONLY": "R", "CLOSED": "c",
           "DELETED": "x", "MERGED": "M"}  # fmt: skip


def render(
    bc: BatchChangeView, stats: BatchChangeStats, needy: Sequence[ChangesetView], now: datetime
) -> str:
    c = stats.counts
    lines = [
        f"{bc.name} (id {bc.id}, {bc.state.value.lower()}, created {relative(bc.created_at, now)})",
        f"{c.total} changesets: " + _counts(c.by_state, STATES) if c.total else "no changesets",
    ]
    if c.by_review_state:
        lines.append("  reviews (open, draft): " + _counts(c.by_review_state))
    if c.by_check_state:
        lines.append("  checks (open, draft):  " + _counts(c.by_check_state))
    lines += ["", *_burndown(stats, now), "", *_action(stats, needy, now)]
    return "\n".join(lines)


def _counts(counts: dict[str, int], order: Sequence[str] = ()) -> str:
    keys = [k for k in order if counts.get(k)] + sorted(k for k in counts if k not in order)
    return ", ".join(f"{k.lower()} {counts[k]}" for k in keys if counts[k])


def _burndown(stats: BatchChangeStats, now: datetime) -> list[str]:
    points = stats.burndown
    widest = max((sum(p.counts.values()) for p in points), default=0)
    legend = " ".join(f"{LETTERS[s]}={s.lower()}" for s in STATES)
    out = [f"burndown, oldest first ({legend}):"]
    if not widest:
        return [*out, "  (nothing tracked yet)"]
    for p in points:
        bar = ""
        for state in STATES:
            n = p.counts.get(state, 0)
            bar += LETTERS[state] * round(n * BAR / widest)
        when = relative(p.at, now) or "now"
        out.append(f"  {when:>12}  {bar:<{BAR}}  {_counts(p.counts, STATES)}")
    return out


def _action(stats: BatchChangeStats, needy: Sequence[ChangesetView], now: datetime) -> list[str]:
    c = stats.counts
    notes = [
        (c.errored, "sync errors (see below; `changesets sync ID` retries now)"),
        (c.by_state.get("READONLY", 0), "READONLY: their repositories are archived"),
        (c.by_check_state.get("FAILED", 0), "open with failed checks"),
        (c.by_review_state.get("CHANGES_REQUESTED", 0), "open with changes requested"),
        (c.by_state.get("UNSYNCED", 0), "not synced yet (`serve` syncs them)"),
    ]
    lines = [f"  {n} {what}" for n, what in notes if n]
    if not lines:
        return ["needs action: nothing"]
    out = ["needs action:", *lines]
    shown = [v for v in needy if v.sync_error or v.external_state == "READONLY"][:SHOWN]
    for v in shown:
        state = v.external_state.value if v.external_state else "UNSYNCED"
        why = f"error: {v.sync_error}" if v.sync_error else "repository archived"
        out.append(f"    #{v.id} {v.repo_name}#{v.number} {state} ({why}) {v.url}")
    more = c.errored + c.by_state.get("READONLY", 0) - len(shown)
    if shown and more > 0:
        out.append(
            f"    ... and {more} more: `changesets list --batch-change ... --state READONLY`"
        )
    return out


def print_json(
    bc: BatchChangeView, stats: BatchChangeStats, needy: Sequence[ChangesetView]
) -> None:
    c = stats.counts
    body = {
        "batch_change": bc,
        "total": c.total,
        "by_state": c.by_state,
        "errored": c.errored,
        "by_review_state": c.by_review_state,
        "by_check_state": c.by_check_state,
        "burndown": {"states": list(STATES), "points": stats.burndown},
        "needs_action": [v for v in needy if v.sync_error or v.external_state == "READONLY"],
    }
    json.dump(body, sys.stdout, default=json_default, indent=2)
    sys.stdout.write("\n")
