"""Request framing (registry/framing.py): the bytes http.client would send for the same call.

http.client writes into a socket that keeps what it is given; the pool's framing must give the
same bytes, and refuse the same input with the same exception types.
"""

from __future__ import annotations

import http.client

import pytest

from ecr_transfer.registry.framing import host_header, request_head

ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"


class _Capture:
    def __init__(self) -> None:
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += bytes(data)


def _http_client_bytes(
    host: str, port: int, method: str, target: str, body: bytes | None, headers: dict[str, str], *, https: bool
) -> bytes:
    cls = http.client.HTTPSConnection if https else http.client.HTTPConnection
    conn = cls(host, port)
    capture = _Capture()
    conn.sock = capture  # type: ignore[assignment]
    conn.request(method, target, body=body, headers=headers)
    return capture.sent


CASES = [
    ("127.0.0.1", 5000, False, "HEAD", "/v2/r2/noop-300-01/manifests/v7", None, {"Accept": ACCEPT}),
    ("127.0.0.1", 5000, False, "HEAD", "/v2/a/manifests/v1", None, {"Accept": ACCEPT, "Authorization": "Bearer x.y"}),
    ("registry.example", 80, False, "GET", "/v2/a/tags/list?n=1000&last=v9", None, {"Accept": ACCEPT}),
    ("registry.example", 443, True, "GET", "/v2/", None, {}),
    ("::1", 5000, False, "HEAD", "/v2/a/manifests/sha256:" + "ab" * 32, None, {"Accept": ACCEPT}),
    ("127.0.0.1", 5000, False, "PUT", "/v2/a/manifests/v1", b'{"schemaVersion":2}', {"Content-Type": "x/y"}),
    ("127.0.0.1", 5000, False, "POST", "/v2/a/blobs/uploads/", None, {}),
    ("127.0.0.1", 5000, False, "GET", "/token?scope=a", None, {"Authorization": "Basic dTpw", "Host": "other:1"}),
]


@pytest.mark.parametrize(("host", "port", "https", "method", "target", "body", "headers"), CASES)
def test_the_request_bytes_are_http_clients(
    host: str, port: int, https: bool, method: str, target: str, body: bytes | None, headers: dict[str, str]
) -> None:
    expected = _http_client_bytes(host, port, method, target, body, headers, https=https)
    value = host_header(host, port, 443 if https else 80)
    assert request_head(method, target, value, headers, body) + (body or b"") == expected


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/v2/a/manifests/v1\r\nX-Injected: 1", {}),  # a tag from a server's tag list
        ("/v2/a/manifests/v 1", {}),
        ("/v2/a/manifests/v1", {"Authorization": "Bearer t\r\nX-Injected: 1"}),  # a token from a server
        ("/v2/a/manifests/v1", {"Bad Name:": "v"}),
        ("/v2/a/manifests/\u00e9", {}),
    ],
)
def test_input_http_client_refuses_is_refused_with_the_same_error(target: str, headers: dict[str, str]) -> None:
    with pytest.raises(Exception) as theirs:
        _http_client_bytes("127.0.0.1", 5000, "HEAD", target, None, headers, https=False)
    with pytest.raises(type(theirs.value)):
        request_head("HEAD", target, "127.0.0.1:5000", headers, None)
