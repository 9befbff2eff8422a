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
specific requests on top.

The registry builds upload `Location` URLs from the `Host` header, which the proxy passes on, so
uploads come back through the proxy too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import socketserver
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from support.httpwire import Dropped, Request, close, read_request, tamper

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
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}
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


class FaultProxy:
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
        up_host, _, up_port = upstream.rpartition(":")
        if up_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the fault proxy forwards to loopback only, not {upstream}")
        self.upstream = (up_host, int(up_port))
        self.seed = seed
        self.drop_rate = drop_rate
        self.error_rate = error_rate
        self.burst_rate = burst_rate
        self.burst_length = burst_length
        self.retry_after = retry_after
        self.stall_rate = stall_rate
        self.stall_seconds = stall_seconds
        self.rules = list(rules or [])
        self.max_lifetime = max_lifetime
        self.enabled = True
        """False: forward everything untouched (faults stop; the proxy keeps serving)."""
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()
        self._connections = 0
        self._burst_left = 0
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        self._server = server
        serve = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        # Bounded in time: a test that forgets stop() does not leave a proxy serving forever.
        watchdog = threading.Timer(self.max_lifetime, self.stop)
        watchdog.daemon = True
        self._threads = [serve, watchdog]
        serve.start()
        watchdog.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            close(sock)
        for thread in self._threads:
            if isinstance(thread, threading.Timer):
                thread.cancel()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

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

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        with self._lock:
            self._sockets.add(client)
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        reader = client.makefile("rb")
        doomed_at, served = self._doomed_at(), 0
        try:
            while not self._stopping.is_set():
                req = read_request(reader)
                if req is None:
                    return
                served += 1
                fault, stall = self._decide(req, drop_now=served == doomed_at)
                if not self._answer(client, upstream, req, fault, stall):
                    return
        except (OSError, Dropped, ValueError, http.client.HTTPException):
            return
        finally:
            upstream.close()
            reader.close()
            close(client)
            with self._lock:
                self._sockets.discard(client)

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
            status, reason, headers, body = self._forward(upstream, req)
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
            body = tamper(body)
        head = [f"HTTP/1.1 {status} {reason}"]
        head += [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
        length = next((v for k, v in headers if k.lower() == "content-length"), "0")
        head.append(f"Content-Length: {length if req.method == 'HEAD' else len(body)}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
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

    def _forward(
        self, upstream: http.client.HTTPConnection, req: Request
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for name, value in req.headers:
            if name.lower() not in _HOP_BY_HOP:
                upstream.putheader(name, value)
        if req.body or req.method in ("PUT", "POST", "PATCH"):
            upstream.putheader("Content-Length", str(len(req.body)))
        upstream.endheaders(req.body or None)
        resp = upstream.getresponse()
        body = resp.read()
        if resp.will_close:
            upstream.close()
        return resp.status, resp.reason, resp.getheaders(), body

    def _send_error(
        self, client: socket.socket, req: Request, status: int, code: str, message: str, fault: str | None
    ) -> None:
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
        head = [
            f"HTTP/1.1 {status} {http.client.responses.get(status, 'Error')}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Docker-Distribution-Api-Version: registry/2.0",
        ]
        if status == 429:
            head.append(f"Retry-After: {self.retry_after}")
        client.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + (b"" if req.method == "HEAD" else body))
        self._record(req, fault, status)
