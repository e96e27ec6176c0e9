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

Repo syncs of an external service (:func:`next_service_sync_at`), every ``interval`` seconds
as configured, counted from the start of the last sync, except:

- a failing service backs off: ``interval * 2 ** (failures - 1)`` after the failed sync,
  capped at ``MAX_SERVICE_BACKOFF`` (8 h, as Sourcegraph's repo syncer); the first success
  resets it. A host that rate-limited us is not asked again before its ``retry_after``.
- an idle service (its last ``IDLE_AFTER`` complete syncs changed nothing) is synced less
  often: the interval doubles every ``IDLE_AFTER`` unchanged syncs, up to ``MAX_IDLE_FACTOR``
  times the interval, and is back to the interval after the first sync that changes
  anything. An archive flip on a quiet service is then seen within ``MAX_IDLE_FACTOR``
  intervals at worst (webhooks and forced syncs are not delayed).

``delay_backoff`` is the plain capped exponential the polling loops use while the database is
unreachable.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MIN_SYNC_DELAY = timedelta(minutes=2)
MAX_SYNC_DELAY = timedelta(hours=8)

MAX_SERVICE_BACKOFF = timedelta(hours=8)
IDLE_AFTER = 3  # unchanged complete syncs before an idle service is synced less often
MAX_IDLE_FACTOR = 4  # an idle service is synced at least every 4 intervals


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


def next_service_sync_at(
    *,
    started: datetime,
    now: datetime,
    interval: timedelta,
    failures: int,
    unchanged: int,
    retry_after: timedelta | None = None,
) -> datetime:
    """When an external service is next due for a repo sync (see the module docstring).

    ``started`` and ``now``: when the sync that just ended started and ended. ``failures``:
    consecutive failed syncs including this one (0: it succeeded). ``unchanged``: consecutive
    complete syncs that changed nothing, including this one. ``retry_after``: the host's
    rate-limit wait, if it rate-limited us."""
    if interval <= timedelta(0):
        raise ValueError("interval must be positive")
    if failures < 0 or unchanged < 0:
        raise ValueError("failures and unchanged must not be negative")
    if failures:
        factor = 1 << min(failures - 1, 20)
        due = now + min(MAX_SERVICE_BACKOFF, interval * factor)
    else:
        due = started + interval * idle_factor(unchanged)
    if retry_after is not None:
        due = max(due, now + retry_after)
    return due


def idle_factor(unchanged: int) -> int:
    """How many intervals apart an idle service's syncs are: 1, then doubling every
    ``IDLE_AFTER`` unchanged syncs, at most ``MAX_IDLE_FACTOR``."""
    return min(MAX_IDLE_FACTOR, 1 << min(unchanged // IDLE_AFTER, 20))


def delay_backoff(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure: ``base * 2 **
    (failures - 1)``, at most ``cap``."""
    if failures < 1:
        return 0.0
    return float(min(cap, base * (1 << min(failures - 1, 30))))


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
