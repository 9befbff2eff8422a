"""Bytes landing at the destination while copies run, for the live progress line.

skopeo says nothing a caller can read while it copies, and a 100 MB layer takes seconds: the
meter looks at the destination instead. Each running image's blobs (config and layers, of
every platform) are read from its source manifest; about once a second one HEAD per blob not
yet seen tells which have landed. Blobs there before the copy began are not counted: they
were not transferred. Only a terminal's progress line asks for this (never the cloud path),
and Docker Hub sources are not inspected (a manifest GET counts as a pull there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ecr_transfer.blobsched import image_blobs
from ecr_transfer.errors import TransferError
from ecr_transfer.model import WorkItem
from ecr_transfer.references import parse_reference
from ecr_transfer.registry.client import RegistryClients

log = logging.getLogger(__name__)


class ByteMeter:
    """Reports (through `landed`) the size of each blob of a running copy when it reaches the destination."""

    def __init__(self, clients: RegistryClients, landed: Callable[[int], None], interval: float = 1.0) -> None:
        self._clients = clients
        self._landed = landed
        self._interval = interval
        self._pending: dict[str, tuple[WorkItem, dict[str, int] | None]] = {}
        """item.source -> (item, blobs still to land; None until the first look has set the baseline)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="byte-meter")
        self._thread.start()

    def started(self, item: WorkItem) -> None:
        with self._lock:
            self._pending[item.source] = (item, None)
        self._wake.set()  # the baseline now, before skopeo uploads anything

    def finished(self, item: WorkItem, copied: bool) -> None:
        """A copied image's blobs have all landed: whatever the meter had not seen yet counts now."""
        with self._lock:
            _, blobs = self._pending.pop(item.source, (item, None))
        if copied and blobs:
            self._landed(sum(blobs.values()))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def _present(self, item: WorkItem, digest: str) -> bool:
        target = parse_reference(item.target)
        try:
            return self._clients.get(target.registry).has_blob(target.repository, digest)
        except TransferError:
            return False

    def _look(self, item: WorkItem, blobs: dict[str, int] | None) -> dict[str, int]:
        if blobs is None:
            # First look: what is there already was not transferred by this copy.
            blobs = dict(image_blobs(self._clients, item))
            return {d: size for d, size in blobs.items() if not self._present(item, d)}
        arrived = {d: size for d, size in blobs.items() if self._present(item, d)}
        if arrived:
            self._landed(sum(arrived.values()))
        return {d: size for d, size in blobs.items() if d not in arrived}

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                running = list(self._pending.values())
            for item, blobs in running:
                try:
                    left = self._look(item, blobs)
                except Exception:  # the meter is a display: it must never break a run
                    log.debug("byte meter: cannot look at %s", item.target, exc_info=True)
                    continue
                with self._lock:
                    if item.source in self._pending:
                        self._pending[item.source] = (item, left)
            self._wake.wait(self._interval)
            self._wake.clear()
