"""Rate limits against a real registry behind a proxy that behaves like Docker Hub.

The proxy keeps a sliding-window pull budget (a manifest GET by tag is a pull, a HEAD is free),
sends `ratelimit-limit` / `ratelimit-remaining` on manifest responses and answers 429 with
`Retry-After` when the budget is gone, or when a test asks for one.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.context import build_context
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.pipeline import RunResult, run
from ecr_transfer.settings import from_mapping

from .conftest import SkopeoRecorder
from .registry_proxy import ProxyReply, ProxyRequest, RegistryProxy

_MANIFEST = re.compile(r"^/v2/.+/manifests/(?P<ref>[^/?]+)")


class HubProxy:
    def __init__(self, upstream: str, *, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.pulls: list[float] = []
        self.prespent = 0
        """Pulls made by someone else; they age out `window` seconds after our first pull."""
        self.events: list[tuple[float, str, str, int]] = []
        """(time, method, reference, remaining after) of every manifest request."""
        self.throttle: dict[tuple[str, str, int], float] = {}
        """(method, reference, n) -> Retry-After for the n-th such request (1-based)."""
        self.seen: dict[tuple[str, str], int] = {}
        self.remaining_fn: Callable[[float], int] | None = None
        """Overrides the sliding window's count, for scripted scenarios."""
        self.served_429 = 0
        self.first_429: float | None = None
        self._lock = threading.Lock()
        self.proxy = RegistryProxy(upstream, before=self._before, after=self._after).start()

    @property
    def host(self) -> str:
        return self.proxy.host

    def remaining(self, now: float) -> int:
        if self.remaining_fn is not None:
            return self.remaining_fn(now)
        others = self.prespent if not self.pulls or now < self.pulls[0] + self.window else 0
        return self.limit - others - sum(1 for at in self.pulls if at > now - self.window)

    def _headers(self, remaining: int) -> list[tuple[str, str]]:
        w = int(self.window) if self.window == int(self.window) else self.window
        return [("RateLimit-Limit", f"{self.limit};w={w}"), ("RateLimit-Remaining", f"{max(0, remaining)};w={w}")]

    def _before(self, request: ProxyRequest) -> ProxyReply | None:
        match = _MANIFEST.match(request.path)
        if match is None:
            return None
        ref, now = match["ref"], time.monotonic()
        with self._lock:
            n = self.seen[(request.method, ref)] = self.seen.get((request.method, ref), 0) + 1
            retry_after = self.throttle.get((request.method, ref, n))
            pull = request.method == "GET" and not ref.startswith("sha256:")
            if retry_after is None and pull and self.remaining(now) <= 0:
                retry_after = 1.0
            if retry_after is not None:
                self.served_429 += 1
                self.first_429 = self.first_429 or now
                self.events.append((now, request.method, ref, self.remaining(now)))
                body = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}'
                headers = [*self._headers(self.remaining(now)), ("Retry-After", f"{retry_after:g}")]
                return ProxyReply(429, [*headers, ("Content-Type", "application/json")], body)
            if pull:
                self.pulls.append(now)
        return None

    def _after(self, request: ProxyRequest, reply: ProxyReply) -> ProxyReply:
        match = _MANIFEST.match(request.path)
        if match is None:
            return reply
        now = time.monotonic()
        with self._lock:
            remaining = self.remaining(now)
            self.events.append((now, request.method, match["ref"], remaining))
        reply.headers += self._headers(remaining)
        return reply

    def stop(self) -> None:
        self.proxy.stop()


@pytest.fixture
def hub(src_registry: LocalRegistry) -> Iterator[Callable[..., HubProxy]]:
    made: list[HubProxy] = []

    def make(*, limit: int, window: float) -> HubProxy:
        made.append(HubProxy(src_registry.host, limit=limit, window=window))
        return made[-1]

    yield make
    for proxy in made:
        proxy.stop()


def transfer(hub: HubProxy, dst: LocalRegistry, tags: list[str], tmp_path: Path) -> RunResult:
    settings = from_mapping(
        {
            "sourceType": "Public",
            "srcImageList": "\n".join(f"{hub.host}/library/app:{t}" for t in tags),
            "destType": "Registry",
            "destRegistry": dst.host,
            "insecureRegistries": [hub.host, dst.host],
        }
    )
    context = build_context(settings)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        return run(context, ledger)
    finally:
        context.close()
        ledger.close()


SAMPLES = {"1": "single", "2": "app-a", "3": "app-b", "4": "multi", "5": "single"}


@pytest.fixture
def digests(seeded_src: Any) -> dict[str, str]:
    """The sample images pushed to library/app at the source: tag -> digest."""
    pushed = seeded_src({f"library/app:{tag}": sample for tag, sample in SAMPLES.items()})
    return {ref.rsplit(":", 1)[1]: digest for ref, digest in pushed.items()}


def test_pauses_before_the_budget_runs_out_and_resumes_when_the_window_refills(
    hub: Callable[..., HubProxy],
    dst_registry: LocalRegistry,
    digests: dict[str, str],
    skopeo_recorder: SkopeoRecorder,
    tmp_path: Path,
) -> None:
    proxy = hub(limit=10, window=3.0)
    proxy.prespent = 6  # someone behind the same address pulled recently: 4 left, for 3 s after our first pull

    result = transfer(proxy, dst_registry, list(SAMPLES), tmp_path)

    assert [o.status for o in result.outcomes] == ["copied"] * 5, [o.error for o in result.outcomes]
    for tag, digest in digests.items():
        assert dst_registry.manifest_digest("library/app", tag) == digest
    assert proxy.served_429 == 0
    gets = [e for e in proxy.events if e[1] == "GET" and not e[2].startswith("sha256:")]
    assert min(e[3] for e in gets) >= 2  # the reserve (2 pulls) was never touched
    # Only 2 pulls fit before the reserve; the other 3 waited for the 6 earlier pulls to age out.
    times = sorted(e[0] for e in gets)
    assert times[2] >= times[0] + 2.9
    assert len(skopeo_recorder.copies()) == 5


def test_retry_after_pauses_every_pull_from_that_registry(
    hub: Callable[..., HubProxy],
    dst_registry: LocalRegistry,
    digests: dict[str, str],
    tmp_path: Path,
) -> None:
    proxy = hub(limit=100, window=3600)
    # The budget is at the reserve, so each copy first asks with a (free) HEAD; the first such
    # HEAD of :1 (its second, after planning's) gets 429 + Retry-After: 2. Then the budget is back.
    proxy.throttle[("HEAD", "1", 2)] = 2.0

    def remaining(now: float) -> int:
        return 50 if proxy.first_429 is not None and now > proxy.first_429 + 0.5 else 2

    proxy.remaining_fn = remaining

    result = transfer(proxy, dst_registry, ["1", "2", "3"], tmp_path)

    assert [o.status for o in result.outcomes] == ["copied"] * 3, [o.error for o in result.outcomes]
    assert dst_registry.manifest_digest("library/app", "3") == digests["3"]
    assert proxy.first_429 is not None
    pulls = [e[0] for e in proxy.events if e[1] == "GET" and not e[2].startswith("sha256:")]
    # No pull from that registry, of any image, before the Retry-After had passed.
    assert len(pulls) == 3 and min(pulls) >= proxy.first_429 + 1.9
