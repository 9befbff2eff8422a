"""Copy order that uploads each shared blob once: images sharing a blob never copy it at the same time.

skopeo skips a blob the destination repository has and mounts one its blob-info cache has seen
pushed to another repository of the same registry, but two copies running at once both see
"missing" and both upload. So before copying, the source manifests of the images to copy are
read (one GET each, plus one per platform of an index) and a copy starts only when none of its
blobs is being uploaded by a running copy. A blob is free for everyone (skipped, or mounted
from skopeo's blob-info cache) as soon as it has landed: the pipeline HEADs the blobs that
held-back copies wait for at the uploading copy's destination, so a small layer every image
shares holds the others back for the moment it takes to upload, not for the whole image.
Blobs no one else needs never hold anything up.

Docker Hub counts every manifest GET against its pull limit, so images from there are not
inspected and are scheduled as before (in order, unconstrained).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ecr_transfer.errors import TransferError
from ecr_transfer.model import WorkItem
from ecr_transfer.references import DOCKER_HUB, parse_reference
from ecr_transfer.registry.client import RegistryClients
from ecr_transfer.registry.mediatypes import INDEX_TYPES

log = logging.getLogger(__name__)
_MAX_CHILDREN = 32
"""An index with more platforms than this is not inspected (each one is a GET)."""


Blobs = Mapping[str, int]
"""Blob digest -> size in bytes."""


class Unit(Protocol):
    """What the schedule hands out: one image (a WorkItem), or a batch of images (batches.Batch)."""

    @property
    def source(self) -> str:
        """The unit's key (an image's source reference)."""
        ...

    @property
    def target(self) -> str:
        """Where its blobs land: the destination reference whose repository is HEADed for them."""
        ...


U = TypeVar("U", bound=Unit)


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the source manifests said about the images of a run, read once (one GET each)."""

    blobs: dict[str, Blobs]
    """item.source -> the blobs its copy may upload (blob_sets)."""
    images: dict[str, int]
    """item.source -> total blob bytes, for sources that are one image manifest (not an index)."""


def _blobs(doc: Mapping[str, object]) -> dict[str, int]:
    found: dict[str, int] = {}
    for blob in [doc.get("config"), *(doc.get("layers") or [])]:  # type: ignore[misc]
        if isinstance(blob, dict) and isinstance(blob.get("digest"), str):
            size = blob.get("size")
            found[blob["digest"]] = size if isinstance(size, int) else 0
    return found


def image_blobs(clients: RegistryClients, item: WorkItem) -> Blobs:
    """Config and layer blobs of every platform of the item's source; empty when unknown."""
    return _read_blobs(clients, item)[0]


def _read_blobs(clients: RegistryClients, item: WorkItem) -> tuple[Blobs, bool]:
    """(blobs, whether the source is one image manifest rather than an index)."""
    ref = parse_reference(item.source)
    if ref.registry == DOCKER_HUB or item.error is not None:
        return {}, False
    client = clients.get(ref.registry)
    try:
        body = client.get_manifest(ref.repository, item.source_digest or ref.reference)
        if body is None:
            return {}, False
        doc = json.loads(body)
        children = doc.get("manifests")
        if doc.get("mediaType") in INDEX_TYPES or isinstance(children, list):
            blobs: dict[str, int] = {}
            if not isinstance(children, list) or len(children) > _MAX_CHILDREN:
                return {}, False
            for child in children:
                child_body = client.get_manifest(ref.repository, child["digest"])
                if child_body is not None:
                    blobs.update(_blobs(json.loads(child_body)))
            return blobs, False
        return _blobs(doc), doc.get("schemaVersion") == 2
    except (TransferError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # Not knowing only costs a possible duplicate upload; the copy itself will report real trouble.
        log.debug("%s: blobs not known (%s); copied without ordering", item.source, exc)
        return {}, False


def _at_target(clients: RegistryClients, item: Unit, digest: str) -> bool:
    target = parse_reference(item.target)
    try:
        return clients.get(target.registry).has_blob(target.repository, digest)
    except TransferError:
        return False  # unknown: assume it will be uploaded (it may wait, never race)


def _repository(reference: str) -> str:
    target = parse_reference(reference)
    return f"{target.registry}/{target.repository}"


def blob_sets(clients: RegistryClients, items: list[WorkItem], concurrency: int = 16) -> dict[str, Blobs]:
    """item.source -> the blobs its copy may upload, for a batch of copies (nothing to order for fewer than two)."""
    return inspect(clients, items, concurrency).blobs


def inspect(clients: RegistryClients, items: Sequence[WorkItem], concurrency: int = 16) -> Inspection:
    """The items' source manifests, read once: the blobs each copy may upload, and which are plain images.

    A shared blob already in the image's destination repository is skipped by skopeo, not
    uploaded, so it cannot race: one HEAD per shared blob and destination repository finds those
    (in an incremental run, the changed images' base layers are all there already; 200 new tags
    of one repository on one base cost one HEAD, not 200).
    """
    if len(items) < 2:
        return Inspection(blobs={}, images={})
    workers = min(concurrency, len(items))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blobs") as pool:
        read = list(pool.map(lambda item: _read_blobs(clients, item), items))
        found = [dict(blobs) for blobs, _ in read]
        uses = Counter(digest for blobs in found for digest in blobs)
        checks: dict[tuple[str, str], WorkItem] = {}
        repositories = [_repository(item.target) for item in items]
        for item, repository, blobs in zip(items, repositories, found, strict=True):
            for digest in blobs:
                if uses[digest] > 1:
                    checks.setdefault((repository, digest), item)
        keys = list(checks)
        present = dict(zip(keys, pool.map(lambda key: _at_target(clients, checks[key], key[1]), keys), strict=True))
    for repository, blobs in zip(repositories, found, strict=True):
        for digest in [d for d in blobs if uses[d] > 1]:
            if present[(repository, digest)]:
                del blobs[digest]
    images = {
        item.source: sum(blobs.values()) for item, (blobs, single) in zip(items, read, strict=True) if single and blobs
    }
    return Inspection(blobs={item.source: b for item, b in zip(items, found, strict=True)}, images=images)


def arrived_blobs(clients: RegistryClients, awaited: Mapping[str, Unit], pool: ThreadPoolExecutor) -> set[str]:
    """Which awaited blobs the uploading copy's destination repository already has (one HEAD each)."""
    pairs = list(awaited.items())
    present = pool.map(lambda pair: _at_target(clients, pair[1], pair[0]), pairs)
    return {digest for (digest, _), there in zip(pairs, present, strict=True) if there}


class BlobSchedule(Generic[U]):
    """Hands out items, holding back any whose shared blobs a running copy is uploading.

    Among the items free to start, one that brings shared blobs nobody has uploaded yet goes
    first, the one whose shared blobs the most bytes of other images wait for: it unlocks the
    most work soonest.
    The others go largest first, so the long copies do not end up alone at the end of the run.
    """

    def __init__(self, items: Iterable[U], blobs: Mapping[str, Blobs], demand: Mapping[str, int] | None = None) -> None:
        """`demand`: shared blob -> bytes of the run's images that need it, when these items are only
        part of the run (the platforms of one index): the platform bringing the blob that the most
        work waits for goes first."""
        self._pending = list(items)
        self._uses = Counter(b for item in self._pending for b in blobs.get(item.source, {}))
        self._size = {item.source: sum(blobs.get(item.source, {}).values()) for item in self._pending}
        if demand is None:
            waiting: Counter[str] = Counter()
            for item in self._pending:
                for b in blobs.get(item.source, {}):
                    if self._uses[b] > 1:
                        waiting[b] += max(1, self._size[item.source])
            demand = waiting
        self.demand: Mapping[str, int] = demand
        self._blobs = {item.source: frozenset(blobs.get(item.source, {})) for item in self._pending}
        # Only blobs that two or more images share can race; a blob of one image never waits.
        self._shared = {
            item.source: frozenset(b for b in blobs.get(item.source, {}) if self._uses[b] > 1) for item in self._pending
        }
        self._uploading: set[str] = set()
        self._claimed: dict[str, frozenset[str]] = {}
        self._landed: set[str] = set()
        self._by_source = {item.source: item for item in self._pending}

    def take(self) -> U | None:
        """The next item free to start now, or None (nothing pending, or all held back)."""
        best: tuple[int, int, int, int] | None = None
        for index, item in enumerate(self._pending):
            shared = self._shared.get(item.source, frozenset())
            if shared & self._uploading:
                continue
            unlocks = sum(self.demand.get(b, 0) for b in self._blobs[item.source] - self._landed)
            key = (0 if unlocks else 1, -unlocks, -self._size[item.source], index)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        item = self._pending.pop(best[3])
        claim = self._shared.get(item.source, frozenset()) - self._landed
        self._uploading |= claim
        self._claimed[item.source] = claim
        return item

    def awaited(self) -> dict[str, U]:
        """Blobs a held-back item waits for -> the running copy uploading them."""
        wanted = {b for item in self._pending for b in self._shared.get(item.source, frozenset()) & self._uploading}
        return {b: self._by_source[source] for source, claim in self._claimed.items() for b in claim & wanted}

    def arrived(self, digests: Iterable[str]) -> None:
        """These blobs are at the destination already, while the copies bringing them still run."""
        arrived = set(digests)
        self._uploading -= arrived
        self._landed |= arrived

    def finished(self, item: U, landed: bool) -> None:
        """A copy ended; its blobs are at the destination when it succeeded."""
        claim = self._claimed.pop(item.source, frozenset())
        self._uploading -= claim
        if landed:
            self._landed |= self._shared.get(item.source, frozenset())

    def rest(self) -> list[U]:
        """Items never started (after an interruption)."""
        rest, self._pending = self._pending, []
        return rest

    @property
    def pending(self) -> int:
        return len(self._pending)


class LandingWatch(Generic[U]):
    """Looks for the blobs held-back copies wait for, soon after a claim and then less often.

    A shared layer lands well before the image that brings it is done (its other layers and
    the manifest are still on their way): freeing it then lets the copies waiting for it start
    and mount it instead of queueing behind the whole image. Each look is one HEAD per awaited
    blob at the uploading copy's destination; the interval grows while nothing arrives.
    """

    FIRST = 0.1
    LAST = 1.0
    GROWTH = 1.1
    """Looks 0.1 s apart at first (a layer found late idles the copies waiting for it), about
    0.2 s apart after two seconds and 1 s apart after ten; each look is a HEAD per awaited blob."""

    def __init__(
        self, clients: RegistryClients, schedule: BlobSchedule[U], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clients, self._schedule, self._clock = clients, schedule, clock
        self._interval = self.FIRST
        self._next: float | None = None
        self._watched: frozenset[str] = frozenset()
        self._pool: ThreadPoolExecutor | None = None

    def timeout(self) -> float | None:
        """How long to wait for a copy to finish before looking again; None: nothing to look for."""
        awaited = frozenset(self._schedule.awaited())
        if not awaited:
            self._next, self._watched = None, frozenset()
            return None
        now = self._clock()
        if self._next is None or awaited - self._watched:
            # New claims: look soon, as a small shared layer lands within moments.
            self._interval, self._next = self.FIRST, now + self.FIRST
        self._watched = awaited
        return max(0.0, self._next - now)

    def look(self) -> None:
        """When it is time: HEAD the awaited blobs and free the ones that have landed."""
        if self._next is None or self._clock() < self._next:
            return
        awaited = self._schedule.awaited()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="landed")
        arrived = arrived_blobs(self._clients, awaited, self._pool) if awaited else set()
        if arrived:
            log.debug("shared blobs landed while their copies run: %s", sorted(arrived))
            self._schedule.arrived(arrived)
        self._interval = self.FIRST if arrived else min(self.LAST, self._interval * self.GROWTH)
        self._next = self._clock() + self._interval

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
