"""The few HTTP/1.1 wire pieces the fault proxy needs: read a request, alter a body, hang up."""

from __future__ import annotations

import contextlib
import io
import json
import socket

_MAX_LINE = 65536


class Request:
    def __init__(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]


class Dropped(Exception):
    """The proxy decided to cut this connection."""


def read_request(reader: io.BufferedReader) -> Request | None:
    """The next request with its whole body (Content-Length or chunked); None: hang up."""
    if reader.peek(1)[:1] == b"\x16":
        # A TLS ClientHello: clients probe https first on an insecure registry. Hang up at once
        # (the hello has no line end to wait for) so they fall back to plain HTTP.
        return None
    line = reader.readline(_MAX_LINE)
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None  # not HTTP: hang up
    headers: list[tuple[str, str]] = []
    while True:
        raw = reader.readline(_MAX_LINE)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
    lower = {k.lower(): v for k, v in headers}
    if lower.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(reader.readline(_MAX_LINE).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(reader.read(size))
            reader.readline(_MAX_LINE)
        body = b"".join(chunks)
    else:
        body = reader.read(int(lower.get("content-length", "0") or 0))
    return Request(parts[0], parts[1], headers, body)


def tamper(body: bytes) -> bytes:
    """A JSON document (a manifest) still valid, but no longer the same bytes."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    if not isinstance(doc, dict):
        return body
    doc.setdefault("annotations", {})["org.example.tampered"] = "by the fault proxy"
    return json.dumps(doc, separators=(",", ":")).encode()


def close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
