"""Several small images per skopeo process: which images go together, and copying such a batch.

A `skopeo copy` per image spends about as much CPU starting up (process, policy, connections)
as it spends copying a small image, and our own steps per copy (an authfile, a digest file, a
fork of this process) add as much again. So the images of one destination repository that are
small single-platform manifests go, several at a time, through one `skopeo sync` (skopeo_sync.py),
followed by ONE bulk digest lookup at the destination (manifest HEADs over kept-alive
connections, or ECR's bulk calls) instead of a verification per copy.

Every image still ends with its own outcome: copied when the destination now answers the source
digest planned; failed with its own cause when skopeo named it (permanent causes are final);
anything else (a transient cause, a conflict, another digest, no word at all) goes on through the
per-image copier (Copier.resume / Copier.copy), with the same retries, backoff and attempt count.

What stays one image per process: multi-arch indexes (their platforms are copied side by side,
and some need writing as they are), images larger than BATCH_MAX_BYTES (where ordering uploads
across images matters more than a process start), Docker Hub sources (their manifests are not
read: a GET counts as a pull) and any source that announced a pull budget (each pull is paced
just before its copy starts, which a batch cannot do), digest-pinned images, referrers, platform subsets, and any
repository with fewer than MIN_BATCH of them (a batch copies its images one after another: with
few images, parallel single copies end sooner).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ecr_transfer import envvars
from ecr_transfer.blobsched import Blobs, Inspection
from ecr_transfer.context import TransferContext
from ecr_transfer.copier import Copier
from ecr_transfer.errors import ConflictError, TransferError, TransientError
from ecr_transfer.model import Outcome, WorkItem, now
from ecr_transfer.references import DOCKER_HUB, parse_reference
from ecr_transfer.referrers import REFERRER_REASON, is_referrer_tag
from ecr_transfer.registry.credentials import temporary_authfile
from ecr_transfer.settings import env_count
from ecr_transfer.skopeo_sync import SyncRequest, SyncResult, sync

log = logging.getLogger(__name__)

DEFAULT_BATCH_IMAGES = 50
"""Most images per `skopeo sync`: a stop or a stall loses no more than this many images' progress."""
MIN_BATCH = 4
BATCH_MAX_BYTES = 32 << 20
"""Images up to this size (config and layers) are batched: at ~180 MB/s over loopback, well under
a fifth of a second each, where a skopeo process start is a large share of the cost."""
_NEEDS_SINGLE_COPY = ("but we cannot modify it",)
"""--preserve-digests refused a conversion: the per-image copier converts and says what changed."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Images of one source repository bound for one destination repository, copied by one skopeo."""

    items: tuple[WorkItem, ...]

    @property
    def source(self) -> str:
        """The schedule's key for the batch: its first image's source (a WorkItem key never clashes)."""
        return f"{self.items[0].source} (+{len(self.items) - 1})"

    @property
    def target(self) -> str:
        """Where the batch's blobs land: its destination repository (LandingWatch HEADs them there)."""
        return self.items[0].target


Unit = WorkItem | Batch


def units_of(unit: Unit) -> tuple[WorkItem, ...]:
    return unit.items if isinstance(unit, Batch) else (unit,)


def batch_images(environ: Mapping[str, str] | None = None) -> int:
    return env_count(envvars.BATCH_IMAGES, DEFAULT_BATCH_IMAGES, os.environ if environ is None else environ)


def _batchable(item: WorkItem, context: TransferContext, size: int | None) -> bool:
    settings = context.settings
    if size is None or size > BATCH_MAX_BYTES or item.error is not None or item.source_digest is None:
        return False
    if not settings.include_untagged or settings.platforms or item.reason.startswith(REFERRER_REASON):
        return False
    src, dst = parse_reference(item.source), parse_reference(item.target)
    if src.registry == DOCKER_HUB or context.rate_limited(src.registry):
        return False
    if not src.tag or src.digest or dst.tag != src.tag or is_referrer_tag(dst.tag):
        return False
    # sync names the destination DEST/<last component of the source repository>:<tag>.
    return dst.repository.rsplit("/", 1)[-1] == src.repository.rsplit("/", 1)[-1]


def plan_units(
    items: Sequence[WorkItem], inspection: Inspection, context: TransferContext, concurrency: int, most: int
) -> tuple[list[Unit], dict[str, Blobs]]:
    """The run's copies as schedule units (batches and single images), with each unit's blobs.

    Batches are sized so the run's batchable images spread over `concurrency` processes (no
    fewer than MIN_BATCH, no more than `most` images each), near-equal within a repository so
    they end together.
    """
    groups: dict[tuple[str, str], list[WorkItem]] = {}
    singles: list[Unit] = []
    for item in items:
        if most >= MIN_BATCH and _batchable(item, context, inspection.images.get(item.source)):
            src, dst = parse_reference(item.source), parse_reference(item.target)
            groups.setdefault((f"{src.registry}/{src.repository}", f"{dst.registry}/{dst.repository}"), []).append(item)
        else:
            singles.append(item)
    batchable = sum(len(g) for g in groups.values() if len(g) >= MIN_BATCH)
    size = min(most, max(MIN_BATCH, math.ceil(batchable / max(1, concurrency))))
    units: list[Unit] = []
    for group in groups.values():
        if len(group) < MIN_BATCH:
            units += group
            continue
        count = math.ceil(len(group) / size)
        units += [Batch(items=tuple(group[k::count])) for k in range(count)]
    units += singles
    blobs = dict(inspection.blobs)
    for unit in units:
        if isinstance(unit, Batch):
            merged: dict[str, int] = {}
            for item in unit.items:
                merged.update(inspection.blobs.get(item.source, {}))
            blobs[unit.source] = merged
    return units, blobs


class BatchCopier:
    """Copies a Batch with one `skopeo sync`, then settles each image (see the module docstring)."""

    def __init__(self, copier: Copier) -> None:
        self._copier = copier
        self._context = copier.context
        self._run_id = copier.run_id

    def copy(self, batch: Batch) -> list[Outcome]:
        started = now()
        items = batch.items
        result = self._sync(items)
        landed = self._context.destination.digests([parse_reference(item.target) for item in items])
        outcomes: dict[str, Outcome] = {}
        again: list[tuple[WorkItem, TransferError | None]] = []
        for item, found in zip(items, landed, strict=True):
            failure = result.failures.get(_name(item)) or result.fatal
            if isinstance(found, str) and found == item.source_digest:
                log.info("%s: copied %s to %s (attempt 1, in a batch)", item.source, found, item.target)
                outcomes[item.source] = item.copied(
                    self._run_id, written=found, landed=found, attempts=1, started_at=started, reason=item.reason
                )
            elif isinstance(failure, ConflictError) or _needs_single_copy(failure):
                # An immutable tag (maybe holding this very digest), or a conversion: a copy of its own says.
                again.append((item, None))
            elif failure is not None and not failure.transient:
                outcomes[item.source] = self._copier.resume(item, failure, started)  # final: permanent
            elif failure is None and isinstance(found, str):
                # Another digest landed without a word from skopeo (the source tag moved?): a copy of its own.
                again.append((item, None))
            else:
                if failure is None:
                    failure = TransientError(
                        f"copied, but verifying the destination failed: {found}"
                        if isinstance(found, TransferError)
                        else "skopeo sync did not copy it and named no cause"
                    )
                again.append((item, failure))
        if again:
            log.info("batch of %d: %d image(s) go on one by one", len(items), len(again))
            with ThreadPoolExecutor(max_workers=min(4, len(again)), thread_name_prefix="batch-retry") as pool:
                ended = pool.map(lambda pair: self._one(pair[0], pair[1], started), again)
                for (item, _), outcome in zip(again, ended, strict=True):
                    outcomes[item.source] = outcome
        return [outcomes[item.source] for item in items]

    def _one(self, item: WorkItem, failure: TransferError | None, started: str) -> Outcome:
        return self._copier.copy(item) if failure is None else self._copier.resume(item, failure, started)

    def _sync(self, items: tuple[WorkItem, ...]) -> SyncResult:
        context = self._context
        src, dst = parse_reference(items[0].source), parse_reference(items[0].target)
        if self._copier.stopping:
            return SyncResult(failures={}, fatal=TransientError("the run is stopping: no new copy starts"))
        target, push_host = context.push_target(items[0].target, dst.registry)
        parent = parse_reference(target).repository.rpartition("/")[0]
        try:
            context.prepare_repository(dst.repository)
            for item in items:
                # Pacing (ECR PutImage, Docker Hub pulls): one per image skopeo will push.
                context.before_copy(parse_reference(item.source), parse_reference(item.target))
            with temporary_authfile(self._copier.authfile_entries(src.registry, dst.registry)) as authfile:
                request = SyncRequest(
                    source_registry=src.registry,
                    source_repository=src.repository,
                    tags=tuple(parse_reference(item.source).tag or "" for item in items),
                    destination=f"{push_host}/{parent}" if parent else push_host,
                    src_insecure=context.is_insecure(src.registry),
                    dest_insecure=context.is_insecure(dst.registry) or context.is_insecure(push_host),
                    src_cert_dir=context.cert_dir(src.registry),
                    dest_cert_dir=context.cert_dir(dst.registry, push_host),
                    authfile=authfile,
                    registries_conf=context.registries_conf,
                    drop_env=(envvars.SSL_CERT_FILE,) if context.trust.replaces_env else (),
                    # `concurrency` of these run side by side, each copying one small image after
                    # another: more Go threads per process only add GC and scheduler work (about
                    # 15% of skopeo's CPU per image, measured in bench/results/2026-12-02-round2.md).
                    extra_env={} if envvars.GOMAXPROCS in os.environ else {envvars.GOMAXPROCS: "1"},
                )
                with self._copier.slots:
                    log.debug("batch: %d image(s) of %s by one skopeo sync", len(items), request.name("*"))
                    return sync(request)
        except TransferError as exc:
            return SyncResult(failures={}, fatal=exc)


def _name(item: WorkItem) -> str:
    src = parse_reference(item.source)
    return f"{src.registry}/{src.repository}:{src.tag}"


def _needs_single_copy(failure: TransferError | None) -> bool:
    return failure is not None and any(text in str(failure) for text in _NEEDS_SINGLE_COPY)
