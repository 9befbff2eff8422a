"""A delaying TCP proxy on loopback: the WAN profile.

Every byte is held `delay` (drawn per connection between --min-ms and --max-ms) in each
direction, a new connection pays one round trip before its first byte goes through (the TCP
handshake), and each direction keeps at most `window` bytes in flight, released one round trip
after they were forwarded, the way a TCP window bounds one connection to window/RTT. So the
same things cost what they cost across continents: round trips, new connections, and one
stream's throughput; many connections in parallel still scale.

`--rate-mbit` adds one shared link per direction (the cross-border profile): every connection's
bytes queue for the same token bucket, so parallel streams share the cap instead of adding up,
and bytes sent twice cost the link twice. `--log FILE` writes one line per HTTP request and
response line seen (plain HTTP only: `time conn direction first-line`), for timelines.

Run as `python -m bench.proxy --upstream 127.0.0.1:PORT`; it prints its own port on stdout,
listens on 127.0.0.1 only, and exits by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TextIO

CHUNK = 256 * 1024
_METHODS = (b"GET ", b"HEAD ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HTTP/1.")


class Link:
    """One direction of the shared link: a token bucket (rate, burst of one chunk) all connections queue on.

    Bytes leave in the order they asked for the link, each chunk after the previous one's
    serialization time: the cap holds for the sum of all connections, as on one physical path.
    """

    def __init__(self, bytes_per_s: float) -> None:
        self.rate = bytes_per_s
        self.free_at = 0.0
        self.sent = 0

    async def send(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        start = max(loop.time(), self.free_at)
        self.free_at = start + size / self.rate
        self.sent += size
        if (wait := self.free_at - loop.time()) > 0:
            await asyncio.sleep(wait)


class Tracer:
    """`time conn direction line` for each HTTP request or status line that starts a read (plain HTTP)."""

    def __init__(self, out: TextIO | None) -> None:
        self.out = out

    def saw(self, conn: int, direction: str, data: bytes) -> None:
        if self.out is None or not data.startswith(_METHODS):
            return
        line = data.split(b"\r\n", 1)[0][:600].decode("latin-1")
        agent = ""
        if direction == ">":
            head = data.split(b"\r\n\r\n", 1)[0]
            for h in head.split(b"\r\n")[1:]:
                if h.lower().startswith(b"user-agent:"):
                    agent = " | " + h.split(b":", 1)[1].strip()[:60].decode("latin-1")
        self.out.write(f"{time.time():.4f} {conn} {direction} {line}{agent}\n")


class _Pipe:
    """One direction of one connection: read, hold for `delay`, write in order."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float,
        window: int,
        link: Link | None = None,
        trace: Callable[[bytes], None] | None = None,
    ) -> None:
        self.reader, self.writer = reader, writer
        self.delay, self.window = delay, window
        self.link, self.trace = link, trace
        self.bytes = 0
        self.queue: deque[tuple[float, bytes]] = deque()
        self.ready = asyncio.Event()
        self.inflight = 0
        self.credit = asyncio.Event()
        self.credit.set()
        self.eof = False

    async def pump(self, not_before: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.window:
                while self.inflight >= self.window:
                    self.credit.clear()
                    await self.credit.wait()
            data = await self.reader.read(CHUNK)
            if not data:
                break
            self.bytes += len(data)
            if self.trace is not None:
                self.trace(data)
            due = max(loop.time() + self.delay, not_before)
            not_before = due  # keep order even if the clock or the delay jitters
            self.inflight += len(data)
            self.queue.append((due, data))
            self.ready.set()
        self.eof = True
        self.ready.set()

    def _release(self, size: int) -> None:
        self.inflight -= size
        self.credit.set()

    async def deliver(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self.queue:
                    if self.eof:
                        return
                    self.ready.clear()
                    await self.ready.wait()
                due, data = self.queue.popleft()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if self.link is not None:
                    await self.link.send(len(data))
                self.writer.write(data)
                await self.writer.drain()
                # The receiver's ACK needs the way back: the window reopens one delay later.
                loop.call_later(self.delay, self._release, len(data))
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if self.writer.can_write_eof():
                    self.writer.write_eof()


class Proxy:
    def __init__(
        self,
        upstream: str,
        min_ms: float,
        max_ms: float,
        window: int,
        seed: int = 0,
        rate_mbit: float = 0.0,
        log: TextIO | None = None,
    ) -> None:
        host, _, port = upstream.rpartition(":")
        self.host, self.port = host, int(port)
        self.min_s, self.max_s = min_ms / 1000, max_ms / 1000
        self.window = window
        self.random = random.Random(seed)
        self.connections = 0
        # One link each way, shared by every connection (None: each connection only has its window).
        rate = rate_mbit * 1e6 / 8
        self.up: Link | None = Link(rate) if rate > 0 else None
        self.down: Link | None = Link(rate) if rate > 0 else None
        self.tracer = Tracer(log)
        self.pipes: list[tuple[_Pipe, _Pipe]] = []
        """(towards the registry, back) of every connection so far: the bytes forwarded each way."""

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        delay = self.random.uniform(self.min_s, self.max_s)
        loop = asyncio.get_running_loop()
        # SYN, SYN-ACK, then the request: a new connection's first byte arrives 1.5 round trips after connect().
        handshake_done = loop.time() + 3 * delay
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.port, limit=CHUNK)
        except OSError:
            client_w.close()
            return
        up = _Pipe(client_r, server_w, delay, self.window, self.up, lambda d: self.tracer.saw(conn, ">", d))
        down = _Pipe(server_r, client_w, delay, self.window, self.down, lambda d: self.tracer.saw(conn, "<", d))
        self.pipes.append((up, down))
        try:
            await asyncio.gather(up.pump(handshake_done), up.deliver(), down.pump(0.0), down.deliver())
        except (OSError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # the proxy is shutting down (SIGTERM) with this connection open: nothing to report
        finally:
            for w in (server_w, client_w):
                with contextlib.suppress(Exception):
                    w.close()


async def serve(args: argparse.Namespace) -> None:
    log = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115  # closed below
    try:
        proxy = Proxy(args.upstream, args.min_ms, args.max_ms, args.window, args.seed, args.rate_mbit, log)
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, limit=CHUNK, backlog=512)
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        # SIGTERM (the bench dropping this front) ends the run cleanly, so the byte counts get written.
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.max_seconds)
        if args.stats:
            up, down = sum(u.bytes for u, _ in proxy.pipes), sum(d.bytes for _, d in proxy.pipes)
            stats = {"connections": proxy.connections, "bytes_up": up, "bytes_down": down}
            with open(args.stats, "w") as out:
                json.dump(stats, out)
    finally:
        if log is not None:
            log.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="127.0.0.1:PORT to forward to")
    parser.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--min-ms", type=float, default=20.0, help="one-way delay, lower bound")
    parser.add_argument("--max-ms", type=float, default=25.0, help="one-way delay, upper bound")
    parser.add_argument("--window", type=int, default=4 << 20, help="bytes in flight per direction (0: unbounded)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long, whatever happens")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate-mbit", type=float, default=0.0, help="one shared link per direction (0: none)")
    parser.add_argument("--stats", help="write bytes forwarded each way (JSON) here at exit")
    parser.add_argument("--log", help="append HTTP request/status lines here (plain HTTP)")
    args = parser.parse_args(argv)
    if not args.upstream.startswith(("127.", "localhost:")):
        parser.error("the proxy forwards to loopback addresses only")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
