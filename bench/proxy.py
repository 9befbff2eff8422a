"""A delaying TCP proxy on loopback: the WAN profile.

Every byte is held `delay` (drawn per connection between --min-ms and --max-ms) in each
direction, a new connection pays one round trip before its first byte goes through (the TCP
handshake), and each direction keeps at most `window` bytes in flight, released one round trip
after they were forwarded, the way a TCP window bounds one connection to window/RTT. So the
same things cost what they cost across continents: round trips, new connections, and one
stream's throughput; many connections in parallel still scale.

Run as `python -m bench.proxy --upstream 127.0.0.1:PORT`; it prints its own port on stdout,
listens on 127.0.0.1 only, and exits by itself after --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import time
from collections import deque

CHUNK = 256 * 1024


class _Pipe:
    """One direction of one connection: read, hold for `delay`, write in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, window: int) -> None:
        self.reader, self.writer = reader, writer
        self.delay, self.window = delay, window
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
                self.writer.write(data)
                await self.writer.drain()
                # The receiver's ACK needs the way back: the window reopens one delay later.
                loop.call_later(self.delay, self._release, len(data))
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if self.writer.can_write_eof():
                    self.writer.write_eof()


class Proxy:
    def __init__(self, upstream: str, min_ms: float, max_ms: float, window: int, seed: int = 0) -> None:
        host, _, port = upstream.rpartition(":")
        self.host, self.port = host, int(port)
        self.min_s, self.max_s = min_ms / 1000, max_ms / 1000
        self.window = window
        self.random = random.Random(seed)
        self.connections = 0

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        delay = self.random.uniform(self.min_s, self.max_s)
        loop = asyncio.get_running_loop()
        # SYN, SYN-ACK, then the request: a new connection's first byte arrives 1.5 round trips after connect().
        handshake_done = loop.time() + 3 * delay
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.port, limit=CHUNK)
        except OSError:
            client_w.close()
            return
        up = _Pipe(client_r, server_w, delay, self.window)
        down = _Pipe(server_r, client_w, delay, self.window)
        try:
            await asyncio.gather(up.pump(handshake_done), up.deliver(), down.pump(0.0), down.deliver())
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (server_w, client_w):
                with contextlib.suppress(Exception):
                    w.close()


async def serve(args: argparse.Namespace) -> None:
    proxy = Proxy(args.upstream, args.min_ms, args.max_ms, args.window, args.seed)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", args.port, limit=CHUNK, backlog=512)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    deadline = time.monotonic() + args.max_seconds
    async with server:
        while time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, deadline - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="127.0.0.1:PORT to forward to")
    parser.add_argument("--port", type=int, default=0, help="listen port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--min-ms", type=float, default=20.0, help="one-way delay, lower bound")
    parser.add_argument("--max-ms", type=float, default=25.0, help="one-way delay, upper bound")
    parser.add_argument("--window", type=int, default=4 << 20, help="bytes in flight per direction (0: unbounded)")
    parser.add_argument("--max-seconds", type=float, default=1800.0, help="exit after this long, whatever happens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.upstream.startswith(("127.", "localhost:")):
        parser.error("the proxy forwards to loopback addresses only")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
