"""The one loop that runs copies in the blob schedule's order: whole images and platforms of an index.

Take what the schedule lets start, run it on a worker, wait for one to end (or for the landing
watch's next look), tell the schedule, and again. A stop (Ctrl-C, SIGTERM, an error in the
loop itself) is handled here, once: running copies are let end, their results kept, and every
item that did not end is reported as stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from ecr_transfer.blobsched import BlobSchedule, LandingWatch, blob_sets
from ecr_transfer.model import WorkItem
from ecr_transfer.registry.client import RegistryClients

T = TypeVar("T")


class CopyScheduler(Generic[T]):
    """Runs `work(item)` for every item, `workers` at a time, in the blob schedule's order."""

    def __init__(
        self, clients: RegistryClients, items: list[WorkItem], demand: Mapping[str, int] | None = None
    ) -> None:
        """Reads the items' blobs now (one manifest GET each): `demand` is known before any copy starts.

        `demand`: shared blob -> bytes of the run's images needing it, when the items are only part
        of the run (the platforms of one index); by default the items' own.
        """
        self._clients = clients
        self._schedule = BlobSchedule(items, blob_sets(clients, items), demand)

    @property
    def demand(self) -> Mapping[str, int]:
        """Shared blob -> bytes of the images waiting for it (what orders an index's platforms)."""
        return self._schedule.demand

    def run(
        self,
        work: Callable[[WorkItem], T],
        *,
        workers: int,
        finished: Callable[[WorkItem, T], bool],
        stopped: Callable[[WorkItem], None],
        stop: threading.Event | None = None,
        name: str = "copy",
    ) -> None:
        """Until every item ran: `finished(item, result)` as each ends (returns whether its blobs landed).

        When the loop is left by an exception (KeyboardInterrupt, SystemExit, an error from `work`
        or `finished`), `stop` is set so running copies start no new attempt, they are waited for,
        those that ended are still `finished`, `stopped(item)` is called for every other item, and
        the exception goes on.
        """
        workers = max(1, workers)
        watch = LandingWatch(self._clients, self._schedule)
        running: dict[Future[T], WorkItem] = {}
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

        def fill() -> None:
            while len(running) < workers and (item := self._schedule.take()) is not None:
                running[pool.submit(work, item)] = item

        try:
            fill()
            while running:
                done, _ = wait(running, timeout=watch.timeout(), return_when=FIRST_COMPLETED)
                watch.look()
                for future in done:
                    item = running[future]
                    result = future.result()  # raising, the item is still running: it is reported stopped
                    del running[future]
                    self._schedule.finished(item, landed=finished(item, result))
                fill()
        except BaseException:
            if stop is not None:
                stop.set()
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            for future, item in running.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    finished(item, future.result())
                else:
                    stopped(item)
            for item in self._schedule.rest():
                stopped(item)
            raise
        finally:
            watch.close()
        pool.shutdown(wait=True)
