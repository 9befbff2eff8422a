"""The transport's own header parsing (registry/http.py `_Response`): http.client's framing kept.

The bytes are what a server sends; they reach the response through a reader that hands them out
in the pieces a socket would (a whole answer, or a header block split across two reads).
"""

from __future__ import annotations

import http.client
import io

import pytest

from ecr_transfer.registry.http import Headers, _Response


class _Pieces(io.RawIOBase):
    """A socket's receive side: each read returns at most the next piece."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = list(pieces)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """A response closes its file object when done; the socket under it stays open."""

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._pieces:
            return 0
        piece = self._pieces.pop(0)
        n = min(len(buffer), len(piece))
        buffer[:n] = piece[:n]
        if n < len(piece):
            self._pieces.insert(0, piece[n:])
        return n


class _Sock:
    """http.client makes a new buffered file over the socket for every response, as here."""

    def __init__(self, *pieces: bytes) -> None:
        self.raw = _Pieces(list(pieces))

    def makefile(self, _mode: str) -> io.BufferedReader:
        return io.BufferedReader(self.raw)


def _answer(sock: _Sock, method: str = "GET") -> tuple[_Response, bytes]:
    resp = _Response(sock, method=method)  # type: ignore[arg-type]
    resp.begin()
    return resp, resp.read()


def test_headers_are_case_insensitive_and_a_repeated_one_answers_with_its_first_value() -> None:
    sock = _Sock(
        b'HTTP/1.1 401 Unauthorized\r\nWww-Authenticate: Bearer realm="https://auth/token"\r\n'
        b'WWW-Authenticate: Basic realm="r"\r\nContent-Length: 2\r\n\r\n{}'
    )
    resp, body = _answer(sock)
    headers = resp.msg
    assert isinstance(headers, Headers)
    assert resp.status == 401 and body == b"{}"
    assert headers["www-authenticate"] == 'Bearer realm="https://auth/token"'
    assert headers.get("WWW-AUTHENTICATE") == 'Bearer realm="https://auth/token"'
    assert headers.get_all("www-authenticate") == ['Bearer realm="https://auth/token"', 'Basic realm="r"']
    assert "content-length" in headers and "Link" not in headers
    assert list(headers) == ["Www-Authenticate", "WWW-Authenticate", "Content-Length"]
    assert headers.get("Link", "none") == "none"
    with pytest.raises(KeyError):
        headers["Link"]


def test_a_folded_header_line_continues_the_previous_value() -> None:
    sock = _Sock(b'HTTP/1.1 200 OK\r\nLink: </v2/r/tags/list?n=2&last=b>;\r\n rel="next"\r\nContent-Length: 0\r\n\r\n')
    resp, _ = _answer(sock)
    assert resp.msg.get("link") == '</v2/r/tags/list?n=2&last=b>; rel="next"'


def test_head_has_no_body_and_the_connection_stays_usable_for_the_next_answer() -> None:
    sock = _Sock(
        b"HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:aa\r\nContent-Length: 123\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!",
    )
    first, body = _answer(sock, "HEAD")
    assert (first.status, body, first.will_close) == (200, b"", False)
    assert first.msg.get("docker-content-digest") == "sha256:aa"
    second, body = _answer(sock)
    assert (second.status, body) == (404, b"nope!")


def test_chunked_bodies_are_decoded_and_keep_the_connection() -> None:
    sock = _Sock(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    resp, body = _answer(sock)
    assert (body, resp.chunked, resp.will_close) == (b"hello world", True, False)


def test_a_header_block_split_across_reads_is_read_line_by_line() -> None:
    sock = _Sock(b"HTTP/1.1 200 OK\r\nContent-Ty", b"pe: application/json\r\nContent-Len", b"gth: 2\r\n\r\n[]")
    resp, body = _answer(sock)
    assert (resp.msg.get("content-type"), body) == ("application/json", b"[]")


def test_interim_100_continue_is_skipped() -> None:
    sock = _Sock(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\nHTTP/1.1 201 Created\r\nLocation: /v2/x\r\n\r\n")
    resp = _Response(sock, method="PUT")  # type: ignore[arg-type]
    resp.begin()
    assert (resp.status, resp.msg.get("location"), "x-interim" in resp.msg) == (201, "/v2/x", False)


@pytest.mark.parametrize(
    ("answer", "closes"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\n\r\nuntil the end", True),  # no length, not chunked: read to EOF
    ],
)
def test_keep_alive_follows_http_clients_rules(answer: bytes, closes: bool) -> None:
    resp, _ = _answer(_Sock(answer))
    assert resp.will_close is closes


def test_more_headers_than_http_client_allows_is_an_error() -> None:
    many = b"".join(b"X-%d: v\r\n" % n for n in range(101))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        _answer(_Sock(b"HTTP/1.1 200 OK\r\n" + many + b"\r\n"))
