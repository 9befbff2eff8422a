"""A bare asyncio HTTP/1.1 client (stdlib streams, keep-alive): the benchmark's floors and seeding.

No product code and no third-party HTTP stack, so what it measures is the protocol and the
registry, not a library. Plain HTTP only: the benchmark's registries listen on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class HTTPError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes


class Connection:
    """One keep-alive connection to host:port; requests on it are sequential."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return self._reader, self._writer

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | memoryview = b""
    ) -> Reply:
        reader, writer = await self._open()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "User-Agent: bench-rawhttp"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        if body:
            writer.write(body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            # The server closed an idle keep-alive connection: reconnect once.
            self.close()
            reader, writer = await self._open()
            return await self.request(method, path, headers, body)
        status = int(status_line.split()[1])
        reply_headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            reply_headers[name.strip().lower()] = value.strip()
        data = b""
        if method != "HEAD" and status not in (204, 304):
            if reply_headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while size := int((await reader.readline()).split(b";")[0], 16):
                    parts.append(await reader.readexactly(size))
                    await reader.readline()
                await reader.readline()
                data = b"".join(parts)
            else:
                data = await reader.readexactly(int(reply_headers.get("content-length", "0")))
        if reply_headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, reply_headers, data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class Pool:
    """Up to `size` keep-alive connections to one host; `run` maps a coroutine over items."""

    def __init__(self, address: str, size: int) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._idle: asyncio.Queue[Connection] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(Connection(host, int(port)))
        self.size = size

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        finally:
            self._idle.put_nowait(conn)

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Reply:
        async with self.connection() as conn:
            return await conn.request(method, path, headers, body)

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().close()


async def bounded(items: Iterable[T], size: int, work: Callable[[T], Awaitable[object]]) -> None:
    """Run work(item) for every item, at most `size` at once (a worker per slot, no task per item)."""
    queue = list(items)
    queue.reverse()

    async def worker() -> None:
        while queue:
            await work(queue.pop())

    await asyncio.gather(*(worker() for _ in range(max(1, min(size, len(queue))))))


# -- the distribution API, as little of it as the benchmark needs ------------------------------


async def head_manifest(pool: Pool, repo: str, ref: str) -> str | None:
    reply = await pool.request("HEAD", f"/v2/{repo}/manifests/{ref}", {"Accept": MANIFEST_ACCEPT})
    if reply.status == 404:
        return None
    if reply.status != 200:
        raise HTTPError(f"HEAD {repo}:{ref} -> {reply.status}")
    return reply.headers.get("docker-content-digest")


async def list_tags(pool: Pool, repo: str, page: int = 1000) -> list[str]:
    tags: list[str] = []
    path: str | None = f"/v2/{repo}/tags/list?n={page}"
    while path:
        reply = await pool.request("GET", path)
        if reply.status != 200:
            raise HTTPError(f"GET {path} -> {reply.status}")
        tags += json.loads(reply.body).get("tags") or []
        link = reply.headers.get("link", "")
        path = link[link.index("<") + 1 : link.index(">")] if "rel=" in link and "next" in link else None
    return tags


async def blob_exists(pool: Pool, repo: str, digest: str) -> bool:
    return (await pool.request("HEAD", f"/v2/{repo}/blobs/{digest}")).status == 200


async def put_blob(pool: Pool, repo: str, data: bytes, digest: str | None = None) -> str:
    """Monolithic upload: POST a session, then one PUT with the whole blob."""
    digest = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    async with pool.connection() as conn:
        started = await conn.request("POST", f"/v2/{repo}/blobs/uploads/")
        if started.status != 202:
            raise HTTPError(f"POST upload {repo} -> {started.status}")
        location = started.headers["location"]
        location = location.split("://", 1)[-1].partition("/")[2] if "://" in location else location.lstrip("/")
        sep = "&" if "?" in location else "?"
        done = await conn.request(
            "PUT", f"/{location}{sep}digest={digest}", {"Content-Type": "application/octet-stream"}, data
        )
    if done.status != 201:
        raise HTTPError(f"PUT blob {repo} {digest} -> {done.status}: {done.body[:200]!r}")
    return digest


async def mount_blob(pool: Pool, repo: str, digest: str, from_repo: str) -> bool:
    reply = await pool.request("POST", f"/v2/{repo}/blobs/uploads/?mount={digest}&from={from_repo}")
    if reply.status == 202:
        # Not mountable: the registry opened an upload session instead; leave it to expire.
        return False
    return reply.status == 201


async def put_manifest(pool: Pool, repo: str, ref: str, media_type: str, body: bytes) -> str:
    reply = await pool.request("PUT", f"/v2/{repo}/manifests/{ref}", {"Content-Type": media_type}, body)
    if reply.status != 201:
        raise HTTPError(f"PUT manifest {repo}:{ref} -> {reply.status}: {reply.body[:200]!r}")
    return reply.headers.get("docker-content-digest", "")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await coro

    return asyncio.run(main())


def split_refs(refs: Sequence[str]) -> list[tuple[str, str]]:
    """`repo:tag` -> (repo, tag)."""
    return [(r.rpartition(":")[0], r.rpartition(":")[2]) for r in refs]
