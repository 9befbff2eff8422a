"""A request's bytes, written the way http.client writes them, in one piece.

http.client builds a request through putrequest/putheader/endheaders: per header an encode, a
validation and a list append, then a join and a send. A registry request is a method, a path and
three or four short headers, so the pool formats the block itself (CPU per HEAD: see
bench/results/2026-12-02-noop-s4.md). What goes on the wire is what http.client sends for the
same call: the request line, `Host` (the port only when it is not the scheme's default, an IPv6
address in brackets), `Accept-Encoding: identity`, `Content-Length` for a body (0 for
POST/PUT/PATCH without one), then the caller's headers in order. The same input is refused:
control characters or spaces in the path, illegal header names or values (a tag or a token from
a server must never add a header), with http.client's own exception types.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Mapping

# http.client's own checks (_contains_disallowed_url_pchar_re, _is_legal_header_name,
# _is_illegal_header_value), compiled here on str rather than bytes: the same characters.
_BAD_TARGET = re.compile("[\x00-\x20\x7f]").search
_LEGAL_NAME = re.compile(r"[^:\s][^:\r\n]*").fullmatch
_BAD_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])").search
_BAD_METHOD = re.compile("[\x00-\x1f]").search
_EXPECTS_BODY = frozenset({"PATCH", "POST", "PUT"})


def host_header(host: str, port: int, default_port: int) -> str:
    """The `Host` value http.client's putrequest sends for a connection to host:port."""
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


def request_head(method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None) -> bytes:
    """Request line and header block, ending with the blank line."""
    if _BAD_METHOD(method):
        raise ValueError(f"method can't contain control characters. {method!r}")
    if _BAD_TARGET(target):
        raise http.client.InvalidURL(f"URL can't contain control characters. {target!r}")
    given = {name.lower() for name in headers}
    # ASCII as http.client encodes the request line (a non-ASCII path fails the same way).
    line = f"{method} {target} HTTP/1.1\r\n".encode("ascii")
    parts = [] if "host" in given else [f"Host: {host}\r\n"]
    if "accept-encoding" not in given:
        parts.append("Accept-Encoding: identity\r\n")
    if "content-length" not in given and "transfer-encoding" not in given:
        if body is not None:
            parts.append(f"Content-Length: {len(body)}\r\n")
        elif method.upper() in _EXPECTS_BODY:
            parts.append("Content-Length: 0\r\n")
    for name, value in headers.items():
        if not _LEGAL_NAME(name):
            raise ValueError(f"Invalid header name {name!r}")
        if _BAD_VALUE(value):
            raise ValueError(f"Invalid header value {value!r}")
        parts.append(f"{name}: {value}\r\n")
    parts.append("\r\n")
    return line + "".join(parts).encode("latin-1")  # latin-1: http.client's encoding of header values


__all__ = ["host_header", "request_head"]
