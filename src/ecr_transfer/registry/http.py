"""Keep-alive HTTP(S) connections on http.client: the registry client's transport.

A no-op run is thousands of manifest HEADs and nothing else, so the CPU per request is most of
its cost. urllib3 spends about 470 µs of CPU per HEAD on this kind of machine and http.client
about 270 µs (bench/README.md); urllib3 is also the largest import of a run. What the client
needs is small: idle connections kept per (scheme, host, port) and reused, a connect and a read
timeout, one TLS context per pool, and the cause of a failure kept for the error message.

http.client parses every response's headers with the email package (a feed parser, a policy
object, a linear case-folding scan per lookup): in a profile of a 3,000-tag no-op that was the
largest single cost per HEAD. `_Response` reads the same header block into a dict instead and
keeps http.client's own framing rules (status line, 100-continue, chunked, Content-Length,
keep-alive), so bodies, HEADs and connection reuse behave exactly as before.
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

from ecr_transfer.registry.framing import host_header, request_head

log = logging.getLogger(__name__)
# A connection the server closed while it sat idle fails like this on its next request,
# before any answer: safe to send again on a fresh connection, once.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine)


class HTTPError(Exception):
    """A request that got no HTTP answer (refused, reset, timed out, TLS); `reason` is the cause."""

    def __init__(self, message: str, reason: BaseException) -> None:
        super().__init__(message)
        self.reason = reason


_MAX_LINE = 65536
_MAX_HEADERS = 100
"""http.client's own limits on a header line and on the number of headers."""


class Headers(Mapping[str, str]):
    """Response headers, case-insensitive; a repeated header answers with its first value, as
    http.client's email-based message did (`get_all` has every value)."""

    __slots__ = ("_first", "_pairs")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._first: dict[str, str] = {}
        for name, value in pairs:
            self._first.setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._first.get(name.lower(), default)

    def get_all(self, name: str, failobj: Any = None) -> Any:
        key = name.lower()
        found = [v for n, v in self._pairs if n.lower() == key]
        return found or failobj

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._pairs)


def _read_headers(fp: Any) -> Headers:
    # An answer usually arrives whole: take its header block from the reader's buffer at once.
    buffered = fp.peek(_MAX_LINE)
    end = buffered.find(b"\r\n\r\n")
    if buffered.startswith(b"\r\n"):
        fp.read(2)
        return Headers([])
    if 0 <= end < _MAX_LINE:
        lines = fp.read(end + 4)[:end].decode("iso-8859-1").split("\r\n")
    else:
        lines = []
        while True:
            line = fp.readline(_MAX_LINE + 1)
            if len(line) > _MAX_LINE:
                raise http.client.LineTooLong("header line")
            if line in (b"\r\n", b"\n", b""):
                break
            lines.append(line.decode("iso-8859-1").rstrip("\r\n"))
            if len(lines) > _MAX_HEADERS:
                break
    if len(lines) > _MAX_HEADERS:
        raise http.client.HTTPException(f"got more than {_MAX_HEADERS} headers")
    pairs: list[tuple[str, str]] = []
    for text in lines:
        if text[:1] in (" ", "\t") and pairs:  # an obsolete folded continuation of the previous header
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {text.strip()}")
            continue
        name, _, value = text.partition(":")
        pairs.append((name.strip(), value.strip()))
    return Headers(pairs)


class _Response(http.client.HTTPResponse):
    """http.client's response, its headers read into `Headers` (see the module docstring)."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            _read_headers(self.fp)  # the interim 100 response's headers
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        headers = _read_headers(self.fp)
        self.headers = self.msg = headers
        self.chunked = (headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            if self.length is not None and self.length < 0:
                self.length = None
        if (
            status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
            or 100 <= status < 200
            or self._method == "HEAD"
        ):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


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
        self._hosts: dict[tuple[str, str], str] = {}  # the Host header per (scheme, host)
        self._lock = threading.Lock()

    def _connect(self, scheme: str, host: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if scheme == "https":
            if self._context is None:
                self._context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, timeout=self._connect_timeout, context=self._context)
        else:
            conn = http.client.HTTPConnection(host, timeout=self._connect_timeout)
        conn.response_class = _Response
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

    def _exchange(
        self,
        conn: http.client.HTTPConnection,
        key: tuple[str, str],
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
    ) -> _Response:
        """Send the request in one write (framing.py) and read the answer's head, as
        `conn.request` + `conn.getresponse` do; the connection's own state machine is not used."""
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = host_header(conn.host, conn.port, conn.default_port)
        head = request_head(method, target, host, headers, body)
        sock = conn.sock
        if sock is None:  # pragma: no cover - the pool keeps only open connections
            raise http.client.NotConnected(f"{key[0]}://{key[1]}")
        sock.sendall(head + body if body else head)
        resp = _Response(sock, method=method)
        resp.begin()
        return resp

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
                    resp = self._exchange(conn, key, method, target, body, headers or {})
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
                parsed = resp.msg
                assert isinstance(parsed, Headers)  # every connection of the pool answers with _Response
                return Response(resp.status, parsed, data)
        except (OSError, http.client.HTTPException) as exc:
            if conn is not None:
                conn.close()
            raise HTTPError(f"{method} {scheme}://{host}{target.split('?', 1)[0]}: {exc}", exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover
