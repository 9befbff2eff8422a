"""RateLimiter: budgets from ratelimit-* headers, slow-down before zero, Retry-After pauses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ecr_transfer.errors import TransientError
from ecr_transfer.ratelimit import RateLimiter, parse_quota, parse_retry_after

HUB = "docker.io"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def limiter(t: FakeTime, **kwargs: float) -> RateLimiter:
    return RateLimiter(clock=t.clock, sleep=t.sleep, **kwargs)  # type: ignore[arg-type]


def test_rate_limit_and_retry_after_headers_parse_or_are_ignored() -> None:
    assert parse_quota("76;w=21600") == (76, 21600.0)
    assert parse_quota("100") == (100, None)
    assert parse_quota("lots") is None
    assert parse_quota(None) is None
    assert parse_retry_after("30") == 30.0
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 12:01:00 GMT", now) == 60.0
    assert parse_retry_after("soon") is None


def test_plenty_of_budget_never_waits(t: FakeTime) -> None:
    rl = limiter(t)
    rl.observe(HUB, {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "50;w=21600"})
    for _ in range(40):
        rl.acquire(HUB)
    assert t.slept == []
    budget = rl.budget(HUB)
    assert budget is not None and budget.left == 10


def test_slows_to_the_refill_rate_before_reaching_zero(t: FakeTime) -> None:
    rl = limiter(t, reserve=2)
    rl.observe(HUB, {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "4;w=21600"})
    for _ in range(5):
        rl.acquire(HUB)
    # 4 -> 3 -> 2 freely; from the reserve on, one pull per 21600/100 = 216 s.
    assert t.slept == [216.0, 216.0]
    budget = rl.budget(HUB)
    assert budget is not None and budget.left == -1  # the estimate; the next response resets it


def test_fresh_headers_reset_the_estimate(t: FakeTime) -> None:
    rl = limiter(t, reserve=2)
    rl.observe(HUB, {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "3;w=21600"})
    rl.acquire(HUB)
    rl.observe(HUB, {"ratelimit-remaining": "90;w=21600"})  # the window gave pulls back
    for _ in range(10):
        rl.acquire(HUB)
    assert t.slept == []


def test_retry_after_pauses_every_pull_from_that_registry(t: FakeTime) -> None:
    rl = limiter(t)
    rl.observe(HUB, {"Retry-After": "30"})
    assert rl.acquire(HUB) == 30.0
    assert rl.acquire(HUB) == 0.0
    assert rl.acquire("quay.io") == 0.0  # other registries are not affected
    assert rl.waits == [(HUB, 30.0)]


def test_a_pause_longer_than_the_run_waits_fails_the_copy_as_transient(t: FakeTime) -> None:
    rl = limiter(t, max_pause=600)
    rl.observe(HUB, {"retry-after": "3600"})
    with pytest.raises(TransientError) as raised:
        rl.acquire(HUB)
    assert raised.value.retry_after == 3600.0
    assert str(raised.value) == (
        "rate limited by docker.io: the next pull is allowed in 3600 s, and this run waits at most 600 s"
    )
    assert t.slept == []


def test_registries_without_headers_are_left_alone(t: FakeTime) -> None:
    rl = limiter(t)
    rl.observe("quay.io", {"Content-Type": "application/json"})
    assert rl.budget("quay.io") is None
    assert rl.acquire("quay.io") == 0.0


def test_low_budget_pauses_and_asks_again_with_a_free_head(t: FakeTime) -> None:
    rl = limiter(t, reserve=2)
    rl.observe(HUB, {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "3;w=21600"})
    probes: list[float] = []

    def probe() -> None:  # what a manifest HEAD does: fresh headers reach observe
        probes.append(t.now)
        remaining = 2 if t.now < 1500 else 40  # the sliding window gives pulls back later
        rl.observe(HUB, {"ratelimit-remaining": f"{remaining};w=21600"})

    rl.acquire(HUB, probe)  # 3 left: pull
    assert probes == []
    rl.acquire(HUB, probe)  # 2 left (the reserve): ask, wait 216 s, ask again... until 40 left
    assert t.slept == [216.0, 216.0, 216.0]
    assert probes == [1000.0, 1216.0, 1432.0, 1648.0]
    assert rl.budget(HUB).left == 39  # type: ignore[union-attr]


def test_low_budget_that_never_recovers_fails_after_max_pause(t: FakeTime) -> None:
    rl = limiter(t, reserve=2, max_pause=500)
    rl.observe(HUB, {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "1;w=21600"})
    with pytest.raises(TransientError) as raised:
        rl.acquire(HUB, lambda: None)
    assert str(raised.value) == "rate limited by docker.io: 1 pulls left, and this run waits at most 500 s"
    assert t.slept == [216.0, 216.0]
