"""A fault-injecting HTTP/1.1 proxy for tests: loopback only, bounded in time, reproducible.

Put it in front of a real `docker-registry` and use `proxy.host` in image references: clients
(our registry client and skopeo) talk to the proxy, which forwards to the registry and, now and
then, misbehaves the way real networks and registries do:

- `drop` (per connection, `drop_rate` of them): the connection dies at one of its first three
  requests, mid-body (response cut after half its bytes), after the request reached the
  registry but before any answer (the client cannot know whether it happened), or in the
  middle of the client's request;
- `5xx`: 500/502/503, either instead of forwarding or after the registry already acted;
- `429`: a burst of `burst_length` consecutive requests answered 429 with `Retry-After`;
- `stall`: the response stops half way for `stall_seconds`, then continues (or, with a long
  stall, never does while the test lasts);
- `tamper` (rules only): a JSON body (a manifest) comes back valid but changed (an annotation
  added), with the registry's headers untouched: a wrong image that still parses.

Randomness is seeded. Per-request faults are keyed by (method, normalised path, n-th
occurrence), not by arrival order, so the same seed injects the same faults into the same
requests even when worker threads interleave differently; per-connection drops are keyed by
the connection's number. Retries and thread timing still change which requests exist, so a
run is reproducible in its fault mix, not request for request. `rules` inject a fault into
specific requests on top. Serving, forwarding and replying are the shared relay's (support.relay).
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from support.httpwire import Request, tamper
from support.relay import Relay, error_reply

Fault = Literal[
    "drop",
    "drop:mid-request",
    "drop:mid-response",
    "drop:before-response",
    "5xx",
    "5xx:instead",
    "5xx:after",
    "429",
    "stall",
    "tamper",
]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class Rule:
    """Inject `fault` into the next `times` requests whose "METHOD path" matches `pattern`."""

    pattern: str
    fault: Fault
    times: int = 1
    stall_seconds: float | None = None
    _regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._regex = re.compile(self.pattern)


@dataclass(frozen=True, slots=True)
class Event:
    method: str
    path: str
    fault: str | None
    """None, or the fault with its variant, e.g. `drop:mid-response`, `5xx:after`."""
    status: int | None
    """Status sent to the client; None when the connection was dropped first."""


class FaultProxy(Relay):
    """Proxy one upstream `host:port`. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        drop_rate: float = 0.0,
        error_rate: float = 0.0,
        burst_rate: float = 0.0,
        burst_length: int = 3,
        retry_after: int = 1,
        stall_rate: float = 0.0,
        stall_seconds: float = 1.0,
        rules: list[Rule] | None = None,
        max_lifetime: float = 300.0,
    ) -> None:
        super().__init__(upstream, max_lifetime=max_lifetime)
        self.seed = seed
        self.drop_rate = drop_rate
        self.error_rate = error_rate
        self.burst_rate = burst_rate
        self.burst_length = burst_length
        self.retry_after = retry_after
        self.stall_rate = stall_rate
        self.stall_seconds = stall_seconds
        self.rules = list(rules or [])
        self.enabled = True
        """False: forward everything untouched (faults stop; the proxy keeps serving)."""
        self.events: list[Event] = []
        self._seen: Counter[str] = Counter()
        self._connections = 0
        self._burst_left = 0
        self._local = threading.local()
        """Per connection (one thread each): when it is doomed, how many requests it served."""

    # -- what happened ------------------------------------------------------------------------
    def faults(self) -> Counter[str]:
        """Injected faults by kind (`drop`, `5xx`, `429`, `stall`)."""
        with self._lock:
            return Counter(e.fault.split(":")[0] for e in self.events if e.fault)

    def requests(self) -> int:
        with self._lock:
            return len(self.events)

    # -- decisions ----------------------------------------------------------------------------
    def _draw(self, key: str, n: int, salt: str) -> float:
        digest = hashlib.sha256(f"{self.seed}|{key}|{n}|{salt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def _doomed_at(self) -> int:
        """0, or the number of the request at which this new connection will be dropped."""
        with self._lock:
            self._connections += 1
            n = self._connections
        if self._draw("connection", n, "drop") >= self.drop_rate:
            return 0
        return 1 + int(self._draw("connection", n, "when") * 3)

    def _decide(self, req: Request, drop_now: bool = False) -> tuple[str | None, float]:
        """(fault with variant, stall seconds) for this request."""
        line = f"{req.method} {req.path}"
        key = f"{req.method} {_UUID.sub('*', req.path)}"
        with self._lock:
            self._seen[key] += 1
            n = self._seen[key]
            if not self.enabled:
                return None, 0.0
            for rule in self.rules:
                if rule.times > 0 and rule._regex.search(line):
                    rule.times -= 1
                    return self._variant(rule.fault, req, key, n), rule.stall_seconds or self.stall_seconds
            if self._burst_left > 0:
                self._burst_left -= 1
                return "429:burst", 0.0
        if drop_now:
            return self._variant("drop", req, key, n), 0.0
        u = self._draw(key, n, "fault")
        for fault, rate in (("5xx", self.error_rate), ("stall", self.stall_rate)):
            if u < rate:
                return self._variant(fault, req, key, n), self.stall_seconds  # type: ignore[arg-type]
            u -= rate
        if self._draw(key, n, "burst") < self.burst_rate:
            with self._lock:
                self._burst_left = self.burst_length - 1
            return "429:burst", 0.0
        return None, 0.0

    def _variant(self, fault: Fault, req: Request, key: str, n: int) -> str:
        if ":" in fault or fault in ("stall", "tamper"):
            return fault
        v = self._draw(key, n, "variant")
        if fault == "drop":
            if req.body and v < 0.25:
                return "drop:mid-request"
            return "drop:mid-response" if req.method != "HEAD" and v < 0.75 else "drop:before-response"
        if fault == "5xx":
            return "5xx:after" if v < 0.3 else "5xx:instead"
        return "429:rule"

    # -- serving ------------------------------------------------------------------------------
    def _record(self, req: Request, fault: str | None, status: int | None) -> None:
        with self._lock:
            self.events.append(Event(req.method, req.path, fault, status))

    def connected(self) -> None:
        self._local.doomed_at, self._local.served = self._doomed_at(), 0

    def answer(self, client: socket.socket, upstream: http.client.HTTPConnection, req: Request) -> bool:
        self._local.served += 1
        fault, stall = self._decide(req, drop_now=self._local.served == self._local.doomed_at)
        return self._answer(client, upstream, req, fault, stall)

    def _answer(
        self,
        client: socket.socket,
        upstream: http.client.HTTPConnection,
        req: Request,
        fault: str | None,
        stall: float,
    ) -> bool:
        """Serve one request; False when the connection must end."""
        if fault == "drop:mid-request":
            self._record(req, fault, None)
            return False  # the registry never sees the request: an upload cut short
        if fault is not None and fault.startswith("429"):
            self._send_error(client, req, 429, "TOOMANYREQUESTS", "too many requests", fault)
            return True
        if fault == "5xx:instead":
            status = (500, 502, 503)[len(self.events) % 3]
            self._send_error(client, req, status, "UNAVAILABLE", "injected failure", fault)
            return True
        try:
            reply = self.forward(upstream, req)
        except (OSError, http.client.HTTPException):
            upstream.close()
            self._send_error(client, req, 502, "UNAVAILABLE", "upstream unreachable", None)
            return False
        if fault == "drop:before-response":
            self._record(req, fault, None)
            return False
        if fault == "5xx:after":
            self._send_error(client, req, 500, "UNKNOWN", "injected failure after the registry acted", fault)
            return True
        if fault == "tamper":
            reply.body = tamper(reply.body)
        status = reply.status
        data, body = reply.encode(req.method)
        half = len(body) // 2
        if fault == "drop:mid-response":
            self._record(req, fault, status)
            client.sendall(data + body[:half])
            return False
        if fault == "stall":
            client.sendall(data + body[:half])
            self._record(req, fault, status)
            if self._stopping.wait(stall):
                return False
            client.sendall(body[half:])
            return True
        client.sendall(data + body)
        self._record(req, fault, status)
        return True

    def _send_error(
        self, client: socket.socket, req: Request, status: int, code: str, message: str, fault: str | None
    ) -> None:
        headers = [("Docker-Distribution-Api-Version", "registry/2.0")]
        if status == 429:
            headers.append(("Retry-After", str(self.retry_after)))
        self.send(client, req, error_reply(status, code, message, *headers))
        self._record(req, fault, status)
