"""The one HTTP/1.1 relay under the test proxies: loopback only, one upstream connection per client.

It listens on loopback too, or (`listen`) on the Docker bridge's gateway address, where a Lambda
container that SAM runs on the default bridge reaches this machine (support.docker_engine.bridge_gateway).

`FaultProxy` (support.faultproxy) misbehaves on purpose between client and registry;
`RegistryProxy` (support.registry_proxy) answers or rewrites requests to make a registry act
like ECR or Docker Hub. Both are this relay with their own `answer`: serving connections,
reading requests, forwarding and writing replies happen here once.

The registry builds upload `Location` URLs from the `Host` header, which the relay passes on, so
uploads come back through the proxy too. Bodies are buffered: test images are small.
"""

from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Self

from support.httpwire import Dropped, Request, close, read_request

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str = ""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def encode(self, method: str) -> tuple[bytes, bytes]:
        """(status line and headers, body to send): a HEAD reply keeps the length it announces."""
        reason = self.reason or http.client.responses.get(self.status, "Unknown")
        head = [f"HTTP/1.1 {self.status} {reason}"]
        head += [f"{k}: {v}" for k, v in self.headers if k.lower() not in HOP_BY_HOP]
        length = self.header("Content-Length") if method == "HEAD" else None
        head.append(f"Content-Length: {length or len(self.body)}")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), b"" if method == "HEAD" else self.body


def error_reply(status: int, code: str, message: str, *headers: tuple[str, str]) -> Reply:
    """A distribution-API error body, as a registry sends it."""
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    return Reply(status, [("Content-Type", "application/json; charset=utf-8"), *headers], body)


class Relay:
    """Relays to one upstream `host:port`. Use as a context manager, or start()/stop()."""

    def __init__(self, upstream: str, *, max_lifetime: float = 300.0, listen: str = "127.0.0.1") -> None:
        up_host, _, up_port = upstream.rpartition(":")
        if up_host not in LOOPBACK:
            raise ValueError(f"the test proxies forward to loopback only, not {upstream}")
        self.upstream = (up_host, int(up_port))
        self.max_lifetime = max_lifetime
        self.listen = listen
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._serve(self.request)

        server = socketserver.ThreadingTCPServer((self.listen, 0), Handler, bind_and_activate=False)
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
        return f"{self.listen}:{self.port}"

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(30)
        with self._lock:
            self._sockets.add(client)
        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
        reader = client.makefile("rb")
        self.connected()
        try:
            while not self._stopping.is_set():
                req = read_request(reader)
                if req is None or not self.answer(client, upstream, req):
                    return
        except (OSError, Dropped, ValueError, http.client.HTTPException):
            return
        finally:
            upstream.close()
            reader.close()
            close(client)
            with self._lock:
                self._sockets.discard(client)

    def connected(self) -> None:
        """A client connected (the fault proxy decides here whether to drop the connection later)."""

    def answer(self, client: socket.socket, upstream: http.client.HTTPConnection, req: Request) -> bool:
        """Serve one request; False when the connection must end. By default: relay it."""
        try:
            reply = self.forward(upstream, req)
        except (OSError, http.client.HTTPException):
            upstream.close()
            self.send(client, req, error_reply(502, "UNAVAILABLE", "upstream unreachable"))
            return False
        self.send(client, req, reply)
        return True

    def forward(self, upstream: http.client.HTTPConnection, req: Request) -> Reply:
        """The upstream's reply; the client's Host is kept (see the module docstring)."""
        upstream.putrequest(req.method, req.target, skip_host=True, skip_accept_encoding=True)
        for name, value in req.headers:
            if name.lower() not in HOP_BY_HOP:
                upstream.putheader(name, value)
        if req.body or req.method in ("PUT", "POST", "PATCH"):
            upstream.putheader("Content-Length", str(len(req.body)))
        upstream.endheaders(req.body or None)
        resp = upstream.getresponse()
        body = resp.read()
        if resp.will_close:
            upstream.close()
        return Reply(resp.status, resp.getheaders(), body, resp.reason)

    def send(self, client: socket.socket, req: Request, reply: Reply) -> None:
        head, body = reply.encode(req.method)
        client.sendall(head + body)
