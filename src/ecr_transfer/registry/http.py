"""Keep-alive HTTP(S) connections on http.client: the registry client's transport.

A no-op run is thousands of manifest HEADs and nothing else, so the CPU per request is most of
its cost. urllib3 spends about 470 µs of CPU per HEAD on this kind of machine and http.client
about 270 µs (bench/README.md); urllib3 is also the largest import of a run. What the client
needs is small: idle connections kept per (scheme, host, port) and reused, a connect and a read
timeout, one TLS context per pool, and the cause of a failure kept for the error message.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
# A connection the server closed while it sat idle fails like this on its next request,
# before any answer: safe to send again on a fresh connection, once.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine)


class HTTPError(Exception):
    """A request that got no HTTP answer (refused, reset, timed out, TLS); `reason` is the cause."""

    def __init__(self, message: str, reason: BaseException) -> None:
        super().__init__(message)
        self.reason = reason


class Headers(Mapping[str, str]):
    """Response headers, case-insensitive (as http.client parsed them, no copy)."""

    __slots__ = ("_message",)

    def __init__(self, message: http.client.HTTPMessage) -> None:
        self._message = message

    def __getitem__(self, name: str) -> str:
        value = self._message.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        return self._message.get(name, default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._message

    def __iter__(self) -> Iterator[str]:
        return iter(self._message.keys())

    def __len__(self) -> int:
        return len(self._message)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Headers
    data: bytes

    def json(self) -> Any:
        return json.loads(self.data)


def insecure_context() -> ssl.SSLContext:
    """insecureRegistries: TLS without verification (the user's explicit choice, warned about once)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Pool:
    """Connections to any host, kept alive and reused; thread-safe.

    At most `maxsize` idle connections are kept per host; more may be open at once (one per
    thread), the extra ones are closed after their request.
    """

    def __init__(
        self,
        *,
        maxsize: int = 16,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self._maxsize = maxsize
        self._context = ssl_context
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if scheme == "https":
            if self._context is None:
                self._context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, timeout=self._connect_timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(host, timeout=self._connect_timeout)
        conn.connect()  # the TLS handshake too, under the connect timeout
        if conn.sock is not None:
            conn.sock.settimeout(self._timeout)
        return conn

    def _checkout(self, key: tuple[str, str]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _checkin(self, key: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._maxsize:
                idle.append(conn)
                return
        conn.close()

    def request(
        self, method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Send one request and read the whole answer; HTTPError when no answer came."""
        scheme, _, rest = url.partition("://")
        host, slash, path = rest.partition("/")
        key = (scheme, host)
        target = slash + path if slash else "/"
        reused = self._checkout(key)
        conn = reused
        try:
            for _ in range(2):
                if conn is None:
                    try:
                        conn = self._connect(scheme, host)
                    except OSError as exc:  # refused, unreachable, TLS handshake (the cause is kept)
                        raise HTTPError(f"cannot connect to {scheme}://{host}: {exc}", exc) from exc
                try:
                    conn.request(method, target, body=body, headers=dict(headers or {}))
                    resp = conn.getresponse()
                    data = resp.read()
                except _STALE:
                    conn.close()
                    if reused is None or conn is not reused:
                        raise
                    conn = None  # the idle connection had been closed by the server: once more, fresh
                    continue
                if resp.will_close:
                    conn.close()
                else:
                    self._checkin(key, conn)
                # What `-vv` showed while urllib3 carried requests; no query (it may name a scope).
                log.debug("%s %s://%s%s -> %d", method, scheme, host, target.split("?", 1)[0], resp.status)
                return Response(resp.status, Headers(resp.msg), data)
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            raise HTTPError(f"{method} {scheme}://{host}{target.split('?', 1)[0]}: {exc}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover
