"""When a changeset is next synced: the adaptive schedule and the retry backoff. Pure: ``now``
is always a parameter.

Schedule (after Sourcegraph's batch changes syncer, ``NextSync``): a changeset that changed
recently is likely to change again soon, a quiet one is not. After a successful sync at ``now``
the next sync is due after

    delay = (now - last_change) / 2, clamped to [MIN_SYNC_DELAY, MAX_SYNC_DELAY]

where ``last_change`` is the newest of the host's ``updated_at`` and the timeline events. Halving
(Sourcegraph uses the full time since the change) means a changeset that wakes up after a quiet
period of ``q`` is noticed after at most ``q / 2``: lag stays proportional to how quiet it was,
at about twice the requests of the unhalved rule for busy ones and the same 8 h cap for quiet
ones. Unknown ``last_change`` (never reported) or one in the future (clock skew, a webhook that
arrived before our sync) gives ``MIN_SYNC_DELAY``. Terminal changesets (MERGED, CLOSED,
DELETED) are still synced, to notice a reopen, but always at ``MAX_SYNC_DELAY``: a reopen is rare
and webhooks or explicit requests catch it sooner.

Failed syncs retry with exponential backoff: ``MIN_SYNC_DELAY * 2 ** (failures - 1)``, capped at
``MAX_SYNC_DELAY``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MIN_SYNC_DELAY = timedelta(minutes=2)
MAX_SYNC_DELAY = timedelta(hours=8)


def _clamp(delay: timedelta, low: timedelta, high: timedelta) -> timedelta:
    return max(low, min(high, delay))


def next_sync_at(
    now: datetime,
    last_change: datetime | None,
    *,
    terminal: bool = False,
    min_delay: timedelta = MIN_SYNC_DELAY,
    max_delay: timedelta = MAX_SYNC_DELAY,
) -> datetime:
    """When a changeset synced successfully at ``now`` is next due (see the module docstring)."""
    if min_delay > max_delay:
        raise ValueError("min_delay must not exceed max_delay")
    if terminal:
        return now + max_delay
    if last_change is None or last_change >= now:
        return now + min_delay
    return now + _clamp((now - last_change) / 2, min_delay, max_delay)


def retry_at(
    now: datetime,
    failures: int,
    *,
    min_delay: timedelta = MIN_SYNC_DELAY,
    max_delay: timedelta = MAX_SYNC_DELAY,
) -> datetime:
    """When to retry after the ``failures``-th consecutive failed sync (``failures >= 1``)."""
    if failures < 1:
        raise ValueError("failures must be at least 1")
    # 2 ** 20 * 2 min is far beyond any sane max; cap the exponent to keep the number small.
    factor = 1 << min(failures - 1, 20)
    return now + min(max_delay, min_delay * factor)


def forced_sync_due(
    now: datetime, last_sync_at: datetime | None, min_gap: timedelta, *, running: bool
) -> datetime:
    """When a sync forced at ``now`` (an API call) may run: at least ``min_gap`` after the
    last sync ended, so a burst of requests costs one sync per gap, not one each. While a sync
    is running it may already have listed past the change the caller wants seen, so one more
    follows, ``min_gap`` from now."""
    base = now if running else last_sync_at
    if base is None:
        return now
    return max(now, base + min_gap)
