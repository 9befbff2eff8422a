"""A small HTTP proxy in front of a real registry, with hooks to answer or rewrite requests.

Tests use it to make a docker-registry behave like Amazon ECR (repositories must exist, tags may
be immutable, pushes show up in the control plane) or like Docker Hub (ratelimit-* headers,
429 with Retry-After). Bodies are buffered: test images are a few KB.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


@dataclass
class ProxyRequest:
    method: str
    path: str
    headers: list[tuple[str, str]]
    """In order, repeated names kept: skopeo sends one Accept line per media type."""
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class ProxyReply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


Before = Callable[[ProxyRequest], ProxyReply | None]
"""Answer a request without the registry (return a reply), or let it through (None)."""
After = Callable[[ProxyRequest, ProxyReply], ProxyReply]
"""See (and possibly change) the registry's reply."""


class RegistryProxy:
    def __init__(self, upstream: str, *, before: Before | None = None, after: After | None = None) -> None:
        self.upstream = upstream
        self.before = before
        self.after = after
        self.log: list[tuple[str, str, int]] = []
        """(method, path, status) of every request answered."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        assert self._server is not None, "proxy not started"
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                request = ProxyRequest(self.command, self.path, list(self.headers.items()), self._read_body())
                reply = proxy.before(request) if proxy.before else None
                if reply is None:
                    reply = proxy._forward(request)
                    if proxy.after is not None:
                        reply = proxy.after(request, reply)
                with proxy._lock:
                    proxy.log.append((request.method, request.path, reply.status))
                self.send_response(reply.status)
                for key, value in reply.headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                length = reply.header("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(reply.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="registry-proxy")
        self._thread.start()
        return self

    def _forward(self, request: ProxyRequest) -> ProxyReply:
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            # Keep the client's Host: the registry builds upload Location URLs from it, so they
            # point back at the proxy.
            conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
            for key, value in request.headers:
                if key.lower() not in _HOP_BY_HOP:
                    conn.putheader(key, value)
            if request.body or request.method in ("PUT", "POST", "PATCH"):
                conn.putheader("Content-Length", str(len(request.body)))
            conn.endheaders(request.body or None)
            resp = conn.getresponse()
            body = resp.read()
            return ProxyReply(resp.status, list(resp.getheaders()), body)
        finally:
            conn.close()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
