"""Registry pull rate limits: Docker Hub's `ratelimit-remaining` and 429 `Retry-After`.

Docker Hub sends `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600` on
manifest requests. A manifest HEAD (what planning does) does not count; a pull (skopeo's
manifest GET) does. So the limiter learns the budget from the registry client's responses
(`observe`, installed as RegistryClients' `rate_limit_hook`) and spends it before each copy
(`acquire`, called by the copier through TransferContext.before_copy):

- budget above `reserve`: pull at once;
- budget down to `reserve`: pause. Every `window / limit` seconds (216 s for 100 per 6 h) a
  manifest HEAD, which costs nothing, brings fresh numbers; pulls resume when the sliding
  window has given some back. So the run never runs into zero (where every remaining image
  would fail), and the reserve stays free for other clients behind the same address (Fargate
  tasks behind one NAT share it). Without a way to ask, pulls go at that refill rate instead;
- a 429 (or 503) with `Retry-After`: nobody pulls from that registry until it has passed.

A wait longer than `max_pause` is not slept: the copy fails as transient (rate limited) with
that Retry-After, and the next run picks the image up.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ecr_transfer.errors import TransferError, TransientError
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.client import RegistryClients
from ecr_transfer.registry.http import Headers

DEFAULT_RESERVE = 2
DEFAULT_MAX_PAUSE = 900.0
DEFAULT_SETTLE = 10.0
"""Seconds a started pull counts against a freshly read budget (its GET may not have happened yet)."""
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

    settle: float = DEFAULT_SETTLE
    limit: int | None = None
    remaining: int | None = None
    window: float | None = None
    observed_at: float = 0.0
    acquired: list[float] = field(default_factory=list)
    """When we let pulls start; one may reach the registry only seconds later (skopeo starting)."""
    paused_until: float = 0.0
    next_slot: float = 0.0
    """In slow-down mode: the earliest time of the next pull."""

    @property
    def spent(self) -> int:
        """Pulls the last `remaining` may not include yet: started after it, or just before."""
        return sum(1 for at in self.acquired if at > self.observed_at - self.settle)

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
        settle: float = DEFAULT_SETTLE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.reserve = max(0, reserve)
        self.max_pause = max_pause
        self.settle = settle
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
        # Every response of a run comes through here: the client's headers are case-insensitive
        # already, and copying them per response was a tenth of the CPU of a no-op's HEAD.
        lower = headers if isinstance(headers, Headers) else {k.lower(): v for k, v in headers.items()}
        remaining = parse_quota(lower.get("ratelimit-remaining"))
        limit = parse_quota(lower.get("ratelimit-limit"))
        retry_after = parse_retry_after(lower.get("retry-after"))
        if remaining is None and limit is None and retry_after is None:
            return
        with self._lock:
            budget = self._budgets.setdefault(registry, Budget(settle=self.settle))
            if remaining is not None:
                now = self._clock()
                budget.remaining, budget.observed_at = remaining[0], now
                budget.window = remaining[1] or budget.window
                budget.acquired = [at for at in budget.acquired if at > now - self.settle]
            if limit is not None:
                budget.limit = limit[0]
                budget.window = budget.window or limit[1]
            if retry_after is not None:
                budget.paused_until = max(budget.paused_until, self._clock() + retry_after)
                log.warning("%s asked us to wait %.0f s (Retry-After)", registry, retry_after)

    __call__ = observe

    def _next_wait(self, registry: str, can_probe: bool) -> tuple[float, bool]:
        """(0, False) when a pull may start now (and it is counted), else (seconds to wait, budget low)."""
        with self._lock:
            budget = self._budgets.get(registry)
            if budget is None:
                return 0.0, False
            now = self._clock()
            if budget.paused_until > now:
                return budget.paused_until - now, False
            left = budget.left
            if left is not None and left <= self.reserve:
                if can_probe:
                    return budget.interval, True
                # Nobody to ask for fresh numbers: pull at the window's refill rate.
                if budget.next_slot > now:
                    return budget.next_slot - now, True
                budget.next_slot = now + budget.interval
            budget.acquired.append(now)
            return 0.0, False

    def acquire(self, registry: str, probe: Callable[[], object] | None = None) -> float:
        """Before one pull from `registry`: wait as the budget requires; returns seconds waited.

        `probe` is a free request (a manifest HEAD) whose response headers reach `observe`: when
        the budget looks low, it tells whether the sliding window has given pulls back yet.
        """
        waited = 0.0
        probed = False
        while True:
            wait, low = self._next_wait(registry, probe is not None)
            if wait <= 0:
                return waited
            if low and probe is not None and not probed:
                probed = True
                # A 429 here has recorded its Retry-After through `observe`; the loop honours it.
                with contextlib.suppress(TransferError):
                    probe()
                continue
            if waited + wait > self.max_pause:
                budget = self.budget(registry)
                why = f"{budget.left} pulls left" if low and budget else f"the next pull is allowed in {wait:.0f} s"
                raise TransientError(
                    f"rate limited by {registry}: {why}, and this run waits at most {self.max_pause:.0f} s",
                    retry_after=wait,
                )
            log.info("pausing %.1f s before pulling from %s", wait, registry)
            with self._lock:
                self.waits.append((registry, wait))
            self._sleep(wait)
            waited += wait
            probed = False


def copy_gate(limiter: RateLimiter, clients: RegistryClients) -> Callable[[ImageRef, ImageRef], None]:
    """The TransferContext gate: spend one pull of the source registry's budget before each copy."""

    def before_copy(source: ImageRef, _destination: ImageRef) -> None:
        def probe() -> object:
            return clients.get(source.registry).head_manifest(source.repository, source.reference)

        limiter.acquire(source.registry, probe)

    return before_copy
