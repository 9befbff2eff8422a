"""Reading a distribution registry's access log: which requests a transfer really made.

distribution 2.8 writes gorilla's Combined Log Format to stdout; the benchmark counts requests per
tag by kind from it (manifest HEAD vs GET, blob uploads vs mounts).
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class RequestKind(StrEnum):
    PING = "ping"
    CATALOG = "catalog"
    TAGS_LIST = "tags_list"
    MANIFEST_HEAD = "manifest_head"
    MANIFEST_GET = "manifest_get"
    MANIFEST_PUT = "manifest_put"
    MANIFEST_DELETE = "manifest_delete"
    BLOB_HEAD = "blob_head"
    BLOB_GET = "blob_get"
    BLOB_MOUNT = "blob_mount"
    """POST .../blobs/uploads/?mount=...: status 201 mounted, 202 fell back to an upload session."""
    UPLOAD_POST = "upload_post"
    UPLOAD_PATCH = "upload_patch"
    UPLOAD_PUT = "upload_put"
    REFERRERS = "referrers"
    """GET /v2/<name>/referrers/<digest> (OCI 1.1; distribution 2.8 answers 404, Amazon ECR the index)."""
    OTHER = "other"


# gorilla/handlers' Combined Log Format, which distribution 2.8 writes to stdout:
# 127.0.0.1 - - [29/Nov/2026:11:53:19 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "skopeo/1.9.3"
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LOG_LINE = re.compile(rf'^\S+ \S+ \S+ \[[^\]]+\] "([A-Z]+) (\S+) [^"]*" (\d{{3}}) (\d+|-) {_QUOTED} {_QUOTED}')
# Greedy repo: a repository may itself contain "blobs" or "tags" as a path component.
_ROUTE = re.compile(r"^/v2/(?P<repo>.+)/(?P<area>manifests|blobs|tags|referrers)/(?P<rest>[^/]*(?:/[^/]*)?)$")
_BY_METHOD = {
    "manifests": {"HEAD": RequestKind.MANIFEST_HEAD, "GET": RequestKind.MANIFEST_GET,
                  "PUT": RequestKind.MANIFEST_PUT, "DELETE": RequestKind.MANIFEST_DELETE},
    "blobs": {"HEAD": RequestKind.BLOB_HEAD, "GET": RequestKind.BLOB_GET},
    "uploads": {"POST": RequestKind.UPLOAD_POST, "PATCH": RequestKind.UPLOAD_PATCH,
                "PUT": RequestKind.UPLOAD_PUT},
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RegistryRequest:
    """One access-log line, classified."""

    method: str
    uri: str
    """Path and query as requested."""
    status: int
    size: int
    user_agent: str
    kind: RequestKind
    repo: str | None
    reference: str | None
    """Tag or digest (manifests), digest (blobs, mounts), upload session id (PATCH/PUT)."""

    @property
    def path(self) -> str:
        return self.uri.partition("?")[0]


def classify(method: str, uri: str) -> tuple[RequestKind, str | None, str | None]:
    """(kind, repository, reference) of a distribution API request."""
    path, _, query = uri.partition("?")
    if path in ("/v2/", "/v2"):
        return RequestKind.PING, None, None
    if path == "/v2/_catalog":
        return RequestKind.CATALOG, None, None
    if (route := _ROUTE.match(path)) is None:
        return RequestKind.OTHER, None, None
    repo, area, rest = route["repo"], route["area"], route["rest"]
    if area == "tags":
        return (RequestKind.TAGS_LIST if rest == "list" else RequestKind.OTHER), repo, None
    if area == "referrers":
        return (RequestKind.REFERRERS if method == "GET" and "/" not in rest else RequestKind.OTHER), repo, rest
    if area == "blobs" and (rest + "/").startswith("uploads/"):
        params = urllib.parse.parse_qs(query)
        if method == "POST" and "mount" in params:
            return RequestKind.BLOB_MOUNT, repo, params["mount"][0]
        session = rest.removeprefix("uploads").lstrip("/") or None
        return _BY_METHOD["uploads"].get(method, RequestKind.OTHER), repo, session
    if "/" in rest:
        return RequestKind.OTHER, repo, None
    return _BY_METHOD[area].get(method, RequestKind.OTHER), repo, rest


def parse_access_log(text: str) -> list[RegistryRequest]:
    """Classified requests of an access log; lines in any other format are ignored."""
    found = []
    for line in text.splitlines():
        if (match := _LOG_LINE.match(line)) is None:
            continue
        method, uri, status, size, _, agent = match.groups()
        kind, repo, ref = classify(method, uri)
        size_n = 0 if size == "-" else int(size)
        found.append(RegistryRequest(method, uri, int(status), size_n, agent, kind, repo, ref))
    return found


def count_kinds(requests: Iterable[RegistryRequest]) -> Counter[RequestKind]:
    return Counter(r.kind for r in requests)


# -- the registry ----------------------------------------------------------------------------------


SYNC_PATH = "/v2/?ecr-transfer-sync="
"""Marker requests (AccessLog.sync) go here; they are never returned as requests."""


class AccessLog:
    """One registry's access log file, read from where the last reset left it.

    The registry logs a request just after sending its response, so a client can finish
    before its last line lands. `sync` sends a marker request (through `send`, a GET of a
    path) and waits for its line, which comes after theirs.
    """

    def __init__(self, path: Path, send: Callable[[str], object]) -> None:
        self.path = path
        self._send = send
        self._offset = 0
        self._syncs = 0

    def requests(self, *, sync: bool) -> list[RegistryRequest]:
        if sync:
            self.sync()
        text = self._logged().decode(errors="replace")
        return [r for r in parse_access_log(text) if not r.uri.startswith(SYNC_PATH)]

    def reset(self, *, sync: bool) -> None:
        if sync:
            self.sync()
        self._offset = self.path.stat().st_size

    def _logged(self) -> bytes:
        with open(self.path, "rb") as log:
            log.seek(self._offset)
            return log.read()

    def sync(self) -> None:
        self._syncs += 1
        marker = f"{SYNC_PATH}{self._syncs} ".encode()
        self._send(marker.decode().strip())
        deadline = time.monotonic() + 5
        while marker not in self._logged():
            if time.monotonic() > deadline:
                raise TimeoutError(f"marker {marker!r} never reached {self.path}")
            time.sleep(0.002)
