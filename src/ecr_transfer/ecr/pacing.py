"""Client-side pacing for the ECR API, on top of botocore's adaptive retries.

ECR's API quotas are per account and region. PutImage (10 TPS) is the lowest, and it is spent by
every manifest push, including the ones skopeo makes through the registry API. So each side gets
one `EcrPacing`: our own API calls pass through it (a botocore `before-parameter-build` hook:
once per call and per page, retries excluded), and the copier asks it before each push
(`before_push`, through TransferContext.before_copy). Throttling that still happens (other tools
in the same account) is absorbed by botocore's `adaptive` retry mode, which also slows its own
sending rate after a throttle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.config import Config

from ecr_transfer import __version__

DEFAULT_RATES: Mapping[str, float] = {"PutImage": 10.0, "CreateRepository": 5.0, "GetAuthorizationToken": 5.0}
"""Requests per second per operation; conservative fractions of the documented ECR quotas."""
DEFAULT_RATE = 20.0
"""Every other ECR operation we call (DescribeImages, DescribeRepositories)."""
MAX_ATTEMPTS = 8


def client_config(max_attempts: int = MAX_ATTEMPTS) -> Config:
    """botocore settings for every AWS client: adaptive retries, and a recognisable user agent."""
    return Config(
        retries={"mode": "adaptive", "max_attempts": max_attempts},
        user_agent_extra=f"ecr-transfer/{__version__}",
        connect_timeout=10,
        read_timeout=60,
    )


class Pacer:
    """A token bucket: at most `rate` acquisitions per second, bursts of up to `burst`.

    Thread-safe. The waiting happens outside the lock: callers reserve their slot in order and
    sleep until it comes, so N threads are spread out instead of waking together.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._stamp = clock()

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait


class EcrPacing:
    """One bucket per ECR operation, for one account and region."""

    def __init__(
        self,
        rates: Mapping[str, float] | None = None,
        default_rate: float = DEFAULT_RATE,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rates = {**DEFAULT_RATES, **(rates or {})}
        self._default = default_rate
        self._clock = clock
        self._sleep = sleep
        self._pacers: dict[str, Pacer] = {}
        self._lock = threading.Lock()
        self.waited: dict[str, float] = {}
        """Seconds spent waiting per operation (reported by tests and the benchmark)."""

    def pacer(self, operation: str) -> Pacer:
        with self._lock:
            pacer = self._pacers.get(operation)
            if pacer is None:
                rate = self._rates.get(operation, self._default)
                pacer = Pacer(rate, burst=rate, clock=self._clock, sleep=self._sleep)
                self._pacers[operation] = pacer
            return pacer

    def acquire(self, operation: str) -> None:
        waited = self.pacer(operation).acquire()
        if waited:
            with self._lock:
                self.waited[operation] = self.waited.get(operation, 0.0) + waited

    def attach(self, client: Any) -> None:
        """Pace every call `client` (an ECR client) makes; retries are paced by botocore."""
        client.meta.events.register("before-parameter-build.ecr", self._before_call)

    def _before_call(self, model: Any, **_: Any) -> None:
        self.acquire(str(model.name))

    def before_push(self) -> None:
        """Called before each manifest push (skopeo's PUT spends PutImage quota)."""
        self.acquire("PutImage")
