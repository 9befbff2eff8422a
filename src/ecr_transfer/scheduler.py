"""The one loop that runs copies in the blob schedule's order: whole images and platforms of an index.

Take what the schedule lets start, run it on a worker, wait for one to end (or for the landing
watch's next look), tell the schedule, and again. A stop (Ctrl-C, SIGTERM, an error in the
loop itself) is handled here, once: running copies are let end, their results kept, and every
item that did not end is reported as stopped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Generic, TypeVar

from ecr_transfer.blobsched import Blobs, BlobSchedule, LandingWatch, U, blob_sets
from ecr_transfer.registry.client import RegistryClients

T = TypeVar("T")


class CopyScheduler(Generic[U, T]):
    """Runs `work(item)` for every item, `workers` at a time, in the blob schedule's order.

    An item is one image (a WorkItem) or a batch of images copied by one skopeo (batches.Batch).
    """

    def __init__(
        self,
        clients: RegistryClients,
        items: Sequence[U],
        demand: Mapping[str, int] | None = None,
        blobs: Mapping[str, Blobs] | None = None,
    ) -> None:
        """Reads the items' blobs now (one manifest GET each) unless `blobs` says them: `demand` is
        known before any copy starts.

        `demand`: shared blob -> bytes of the run's images needing it, when the items are only part
        of the run (the platforms of one index); by default the items' own.
        """
        self._clients = clients
        if blobs is None:
            blobs = blob_sets(clients, list(items))  # type: ignore[arg-type]  # images here: WorkItems
        self._schedule: BlobSchedule[U] = BlobSchedule(items, blobs, demand)

    @property
    def demand(self) -> Mapping[str, int]:
        """Shared blob -> bytes of the images waiting for it (what orders an index's platforms)."""
        return self._schedule.demand

    def run(
        self,
        work: Callable[[U], T],
        *,
        workers: int,
        finished: Callable[[U, T], bool],
        stopped: Callable[[U], None],
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
        running: dict[Future[T], U] = {}
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
