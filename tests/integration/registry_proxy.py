"""A small HTTP proxy in front of a real registry, with hooks to answer or rewrite requests.

Tests use it to make a docker-registry behave like Amazon ECR (repositories must exist, tags may
be immutable, pushes show up in the control plane) or like Docker Hub (ratelimit-* headers,
429 with Retry-After). It is the shared relay (support.relay) with two hooks.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from dataclasses import dataclass

from support.httpwire import Request
from support.relay import Relay
from support.relay import Reply as ProxyReply


@dataclass
class ProxyRequest:
    method: str
    path: str
    """With the query string."""
    headers: list[tuple[str, str]]
    """In order, repeated names kept: skopeo sends one Accept line per media type."""
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


Before = Callable[[ProxyRequest], ProxyReply | None]
"""Answer a request without the registry (return a reply), or let it through (None)."""
After = Callable[[ProxyRequest, ProxyReply], ProxyReply]
"""See (and possibly change) the registry's reply."""
__all__ = ["After", "Before", "ProxyReply", "ProxyRequest", "RegistryProxy"]


class RegistryProxy(Relay):
    def __init__(
        self, upstream: str, *, before: Before | None = None, after: After | None = None, listen: str = "127.0.0.1"
    ) -> None:
        super().__init__(upstream, listen=listen)
        self.before = before
        self.after = after
        self.log: list[tuple[str, str, int]] = []
        """(method, path, status) of every request answered."""

    def answer(self, client: socket.socket, upstream: http.client.HTTPConnection, req: Request) -> bool:
        request = ProxyRequest(req.method, req.target, req.headers, req.body)
        reply = self.before(request) if self.before else None
        if reply is None:
            reply = self.forward(upstream, req)
            if self.after is not None:
                reply = self.after(request, reply)
        with self._lock:
            self.log.append((request.method, request.path, reply.status))
        self.send(client, req, reply)
        return True

    def seen(self) -> list[tuple[str, str, int]]:
        """A copy of `log`, taken under the lock the serving threads append with."""
        with self._lock:
            return list(self.log)

    def forget(self) -> None:
        """Start `log` afresh: the next seen() covers one phase only."""
        with self._lock:
            self.log.clear()
