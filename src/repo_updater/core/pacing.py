"""Write pacing: token buckets that keep a code host's writes within its content-creation
limits ("no more than 80 content-generating requests per minute and no more than 500 per
hour", GitHub's REST documentation on secondary rate limits). Pure: the store keeps the
buckets (shared by every worker process) and passes them in with ``now``.

A limit "at most ``count`` writes in any ``window``" becomes a bucket of capacity ``burst``
refilled at ``(count - burst) / window``: in any window of that length at most
``burst + (count - burst) = count`` writes pass, whatever the timing. A larger burst lets a
small operation run at once; a smaller one keeps more of the limit for the steady rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

BURST_FRACTION = 0.1


@dataclass(frozen=True, slots=True)
class WriteLimit:
    """At most ``count`` writes in any ``window_seconds``."""

    count: int
    window_seconds: int

    def __post_init__(self) -> None:
        if self.count < 1 or self.window_seconds < 1:
            raise ValueError("a write limit needs a positive count and window")

    @property
    def burst(self) -> float:
        return max(1.0, self.count * BURST_FRACTION)

    @property
    def per_second(self) -> float:
        """The steady rate: what is left of ``count`` after the burst, over the window."""
        return max(self.count - self.burst, 1.0) / self.window_seconds


@dataclass(frozen=True, slots=True)
class Bucket:
    tokens: float
    refilled_at: datetime


def refill(limit: WriteLimit, bucket: Bucket | None, now: datetime) -> Bucket:
    """The bucket at ``now``: full when new, else topped up by the time passed (a clock that
    went backwards adds nothing), never above the burst (the limit may have been lowered)."""
    if bucket is None:
        return Bucket(limit.burst, now)
    elapsed = max((now - bucket.refilled_at).total_seconds(), 0.0)
    tokens = min(limit.burst, bucket.tokens + elapsed * limit.per_second)
    return Bucket(tokens, max(now, bucket.refilled_at))


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of asking for writes: the buckets to store, the tokens taken, and how long
    to wait when none could be (0.0 when some were taken)."""

    buckets: tuple[Bucket, ...]
    wait_seconds: float
    granted_count: int = 1

    @property
    def granted(self) -> bool:
        return self.wait_seconds == 0.0


def take(
    limits: Sequence[WriteLimit],
    buckets: Sequence[Bucket | None],
    now: datetime,
    *,
    paused_until: datetime | None = None,
    count: int = 1,
) -> Decision:
    """Take up to ``count`` tokens from every bucket (as many as the emptiest one holds), or
    none and say how long until all have one. A host paused by a ``Retry-After``
    (``paused_until``) grants nothing before then."""
    filled = tuple(refill(lim, b, now) for lim, b in zip(limits, buckets, strict=True))
    wait = 0.0
    if paused_until is not None and paused_until > now:
        wait = (paused_until - now).total_seconds()
    for limit, bucket in zip(limits, filled, strict=True):
        if bucket.tokens < 1.0:
            wait = max(wait, (1.0 - bucket.tokens) / limit.per_second)
    if wait > 0:
        return Decision(filled, wait, 0)
    n = min([max(count, 1), *(int(b.tokens) for b in filled)])
    return Decision(tuple(Bucket(b.tokens - n, b.refilled_at) for b in filled), 0.0, n)


def reservation(limits: Sequence[WriteLimit]) -> int:
    """How many tokens a worker takes at once (and spends within a second): a quarter of the
    smallest burst, 1 to 16. Fewer round trips to the shared budget; a small budget is not
    hoarded by one worker."""
    smallest = min((lim.burst for lim in limits), default=4.0)
    return max(1, min(16, int(smallest // 4)))


def paced_rate(limits: Sequence[WriteLimit]) -> float:
    """Writes per second a long run gets through these limits (the slowest bucket)."""
    return min((lim.per_second for lim in limits), default=float("inf"))


def seconds_for(
    writes: int,
    limits: Sequence[WriteLimit],
    buckets: Sequence[Bucket | None],
    now: datetime,
) -> float:
    """How long ``writes`` more writes take through these limits: what the buckets hold goes
    at once, the rest at each bucket's rate (the slowest decides)."""
    seconds = 0.0
    for limit, bucket in zip(limits, buckets, strict=True):
        held = refill(limit, bucket, now).tokens
        seconds = max(seconds, max(writes - int(held), 0) / limit.per_second)
    return seconds


# Content-creation limits when a service does not configure its own: GitHub's documented
# secondary limits; a polite default for the others, which document none for these writes.
GITHUB_WRITE_LIMITS = (WriteLimit(80, 60), WriteLimit(500, 3600))
OTHER_WRITE_LIMITS = (WriteLimit(120, 60), WriteLimit(3000, 3600))


def resume_at(now: datetime, retry_after: float) -> datetime:
    """When a host that answered ``Retry-After: retry_after`` takes writes again."""
    return now + timedelta(seconds=max(retry_after, 0.0))
