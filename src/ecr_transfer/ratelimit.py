"""Registry pull rate limits: Docker Hub's `ratelimit-remaining` and 429 `Retry-After`.

Docker Hub sends `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600` on
manifest requests. A manifest HEAD (what planning does) does not count; a pull (skopeo's
manifest GET) does. So the limiter learns the budget from the registry client's responses
(`observe`, installed as RegistryClients' `rate_limit_hook`) and spends it before each copy
(`acquire`, called by the copier through TransferContext.before_copy):

- budget above `reserve`: pull at once;
- budget down to `reserve`: slow down to the refill rate of the sliding window (one pull per
  `window / limit` seconds, 216 s for 100 per 6 h), so the budget stops shrinking instead of
  running into zero and failing every remaining image; the reserve stays free for other
  clients behind the same address (Fargate tasks behind one NAT share it);
- a 429 (or 503) with `Retry-After`: nobody pulls from that registry until it has passed.

A wait longer than `max_pause` is not slept: the copy fails as transient (rate limited) with
that Retry-After, and the next run picks the image up.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ecr_transfer.errors import TransientError

DEFAULT_RESERVE = 2
DEFAULT_MAX_PAUSE = 900.0
DEFAULT_WINDOW = 21600.0
"""Docker Hub's window (6 hours), when the header does not say."""

log = logging.getLogger(__name__)


def parse_quota(value: str | None) -> tuple[int, float | None] | None:
    """`76;w=21600` -> (76, 21600.0); `76` -> (76, None); anything else -> None."""
    if not value:
        return None
    count_text, *params = (p.strip() for p in value.split(";"))
    try:
        count = int(count_text)
    except ValueError:
        return None
    window: float | None = None
    for param in params:
        key, _, val = param.partition("=")
        if key.strip().lower() == "w":
            try:
                window = float(val)
            except ValueError:
                window = None
    return count, window


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass
class Budget:
    """What one registry last told us, and what we spent since."""

    limit: int | None = None
    remaining: int | None = None
    window: float | None = None
    spent: int = 0
    """Pulls started since `remaining` was observed."""
    paused_until: float = 0.0
    next_slot: float = 0.0
    """In slow-down mode: the earliest time of the next pull."""

    @property
    def left(self) -> int | None:
        return None if self.remaining is None else self.remaining - self.spent

    @property
    def interval(self) -> float:
        """Seconds for the sliding window to give back one pull."""
        window = self.window or DEFAULT_WINDOW
        return window / max(1, self.limit or (self.remaining or 0) + self.spent or 1)


class RateLimiter:
    """Per-registry pull budgets for one run; thread-safe, clock and sleep injectable for tests."""

    def __init__(
        self,
        *,
        reserve: int = DEFAULT_RESERVE,
        max_pause: float = DEFAULT_MAX_PAUSE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.reserve = max(0, reserve)
        self.max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._budgets: dict[str, Budget] = {}
        self.waits: list[tuple[str, float]] = []
        """(registry, seconds) of every wait, for reports and tests."""

    def budget(self, registry: str) -> Budget | None:
        with self._lock:
            return self._budgets.get(registry)

    def observe(self, registry: str, headers: Mapping[str, str]) -> None:
        """The RegistryClients hook: learn the budget and any Retry-After from one response."""
        lower = {k.lower(): v for k, v in headers.items()}
        remaining = parse_quota(lower.get("ratelimit-remaining"))
        limit = parse_quota(lower.get("ratelimit-limit"))
        retry_after = parse_retry_after(lower.get("retry-after"))
        if remaining is None and limit is None and retry_after is None:
            return
        with self._lock:
            budget = self._budgets.setdefault(registry, Budget())
            if remaining is not None:
                budget.remaining, budget.spent = remaining[0], 0
                budget.window = remaining[1] or budget.window
            if limit is not None:
                budget.limit = limit[0]
                budget.window = budget.window or limit[1]
            if retry_after is not None:
                budget.paused_until = max(budget.paused_until, self._clock() + retry_after)
                log.warning("%s asked us to wait %.0f s (Retry-After)", registry, retry_after)

    __call__ = observe

    def _next_wait(self, registry: str) -> float:
        """0 when a pull may start now (and count it), else the seconds to wait first."""
        with self._lock:
            budget = self._budgets.get(registry)
            if budget is None:
                return 0.0
            now = self._clock()
            if budget.paused_until > now:
                return budget.paused_until - now
            left = budget.left
            if left is not None and left <= self.reserve:
                if budget.next_slot > now:
                    return budget.next_slot - now
                budget.next_slot = now + budget.interval
            budget.spent += 1
            return 0.0

    def acquire(self, registry: str) -> float:
        """Before one pull from `registry`: wait as the budget requires; returns seconds waited."""
        waited = 0.0
        while True:
            wait = self._next_wait(registry)
            if wait <= 0:
                return waited
            if wait > self.max_pause:
                raise TransientError(
                    f"rate limited by {registry}: the next pull is allowed in {wait:.0f} s, longer than the "
                    f"{self.max_pause:.0f} s this run waits",
                    retry_after=wait,
                )
            budget = self.budget(registry)
            log.info(
                "pausing %.1f s before pulling from %s (remaining %s)", wait, registry, budget.left if budget else "?"
            )
            with self._lock:
                self.waits.append((registry, wait))
            self._sleep(wait)
            waited += wait
