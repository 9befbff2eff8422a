"""The registry client's transport (registry/http.py): keep-alive reuse, stale connections, failures.

A stdlib HTTP/1.1 server on loopback stands in for a registry here: these tests are about
connections (how many are opened, what happens when the server drops an idle one), which a
real registry does not let a test control. The registry behaviour itself is covered against
docker-registry in test_registry_client.py and test_trust.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ecr_transfer.errors import TransientError
from ecr_transfer.registry.client import RegistryClient
from ecr_transfer.registry.http import HTTPError, Pool


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_HEAD(self) -> None:
        self.server.peers.append(self.client_address)
        self.send_response(200)
        self.send_header("Docker-Content-Digest", "sha256:" + "ab" * 32)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", "123")
        self.end_headers()
        if self.server.drop_after_answer:
            # An idle timeout on the server side: the connection goes without a Connection: close.
            self.close_connection = True

    def log_message(self, *_args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.peers: list[tuple[str, int]] = []
        self.drop_after_answer = False


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _url(server: _Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v2/repo/manifests/v1"


def test_sequential_requests_share_one_connection(server: _Server) -> None:
    pool = Pool(maxsize=4)
    for _ in range(20):
        resp = pool.request("HEAD", _url(server))
        assert resp.status == 200
        assert resp.headers["docker-content-digest"] == "sha256:" + "ab" * 32
        assert resp.data == b""
    assert len(server.peers) == 20
    assert len(set(server.peers)) == 1


def test_a_connection_the_server_dropped_is_replaced_once(server: _Server) -> None:
    server.drop_after_answer = True
    pool = Pool(maxsize=4)
    for _ in range(5):
        assert pool.request("HEAD", _url(server)).status == 200
    # Every request after the first found its idle connection closed, and went on a new one.
    assert len(set(server.peers)) == 5


def test_registry_client_reads_digest_size_and_type_over_the_pool(server: _Server) -> None:
    client = RegistryClient(f"127.0.0.1:{server.server_address[1]}", insecure=True)
    info = client.head_manifest("repo", "v1")
    assert info is not None
    assert (info.digest, info.size, info.media_type) == (
        "sha256:" + "ab" * 32,
        123,
        "application/vnd.oci.image.manifest.v1+json",
    )


def test_no_answer_is_an_http_error_with_its_cause() -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]
    with pytest.raises(HTTPError) as caught:
        Pool().request("HEAD", f"http://127.0.0.1:{port}/v2/")
    assert isinstance(caught.value.reason, ConnectionRefusedError)
    client = RegistryClient(f"127.0.0.1:{port}", endpoint=f"http://127.0.0.1:{port}")
    expected = (
        rf"manifest 127.0.0.1:{port}/repo:v1: network error talking to 127.0.0.1:{port}: "
        rf"cannot connect to http://127.0.0.1:{port}: \[Errno 111\] Connection refused$"
    )
    with pytest.raises(TransientError, match=expected):
        client.head_manifest("repo", "v1")
