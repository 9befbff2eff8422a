"""What the planner asks of each side, and the plain-registry implementation.

ECR implements the same protocols with bulk DescribeImages calls (ecr_transfer.ecr); a
plain registry answers with manifest HEADs, run concurrently with a bounded pool.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from ecr_transfer import envvars
from ecr_transfer.errors import ConfigError, TransferError, TransientError
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.client import RegistryClients
from ecr_transfer.registry.exact import list_referrers

Digest = str | None
DigestResult = Digest | TransferError
"""A digest, None when absent, or the error that kept us from knowing."""
T = TypeVar("T")
MAX_LOOKUP_WAIT = 60.0


def retry_transient(call: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run a lookup, retrying network errors, 5xx and 429 as the copier does (same knobs).

    Without it one dropped HEAD turned an up-to-date image into a copy ("copying to be safe")
    and one failed tag list aborted the whole run as a configuration error.
    """
    attempt = 1
    while True:
        try:
            return call()
        except TransientError as exc:
            # Read on failure only: a no-op plan makes thousands of lookups that all succeed.
            attempts = int(os.environ.get(envvars.MAX_ATTEMPTS, 3))
            base = float(os.environ.get(envvars.BACKOFF_BASE, 2.0))
            if attempt >= attempts:
                raise TransientError(f"{exc} (after {attempt} tries)", retry_after=exc.retry_after) from None
            if exc.retry_after is not None:
                delay = min(MAX_LOOKUP_WAIT, exc.retry_after)
            else:
                # Jitter: concurrent lookups that failed together must not retry together.
                delay = min(MAX_LOOKUP_WAIT, base * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            sleep(delay)
            attempt += 1


def each_in_threads(
    call: Callable[[ImageRef], DigestResult], refs: Sequence[ImageRef], workers: int
) -> list[DigestResult]:
    """`call` on every ref, `workers` threads at once, results in the order of `refs`.

    Each thread takes the next index from one shared iterator (atomic under the GIL) and writes
    its own slot: a no-op plan is thousands of lookups, and a thread pool's future, queue and
    condition per lookup cost more CPU than the lookup's own request building.
    `call` returns errors as values (DigestResult); anything it raises is raised here.
    """
    results: list[DigestResult] = [None] * len(refs)
    indexes = iter(range(len(refs)))
    raised: list[BaseException] = []

    def work() -> None:
        try:
            for n in indexes:
                results[n] = call(refs[n])
        except BaseException as exc:  # a bug: the others stop at their next ref, the caller sees it
            raised.append(exc)
            for _ in indexes:
                pass

    threads = [threading.Thread(target=work, name=f"lookup-{k}", daemon=True) for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if raised:
        raise raised[0]
    return results


class SourceCatalog(Protocol):
    default_registry: str | None
    """Registry of list entries written without a host; None means Docker Hub rules."""

    def all_images(self) -> list[ImageRef]:
        """Every tagged image (srcList ALL)."""
        ...

    def tags(self, repository: ImageRef) -> list[str]: ...

    def pushed_at(self, repository: ImageRef) -> Mapping[str, float]:
        """Tag -> push time (epoch seconds) where the source reports it; tagLatest ranks by it."""
        ...

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]: ...

    def manifest(self, ref: ImageRef) -> bytes | None:
        """The manifest bytes of a digest-pinned ref (a referrers index); None when absent."""
        ...

    def referrers(self, ref: ImageRef) -> list[dict[str, object]] | None:
        """Descriptors the OCI 1.1 referrers API lists for a digest-pinned ref; None without that API."""
        ...


class DestinationCatalog(Protocol):
    registry: str

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]: ...

    def prepare(self, repositories: Sequence[str]) -> None:
        """Make the repositories ready to receive pushes (ECR creates missing ones)."""
        ...


class RegistryCatalog:
    """Any OCI/distribution registry, through manifest HEADs and the tag list API."""

    def __init__(self, clients: RegistryClients, *, registry: str | None = None, concurrency: int = 16) -> None:
        self._clients = clients
        self.registry = registry or ""
        self.default_registry = registry
        self._concurrency = concurrency
        # One run's tag lists: `repo:ALL_TAGS` and the referrer lookup read the same list (a catalog
        # lives for one run, so a tag pushed later is seen by the next one).
        self._tag_lists: dict[tuple[str, str], list[str]] = {}
        self._referrers_failed: set[str] = set()
        self._lock = threading.Lock()

    def all_images(self) -> list[ImageRef]:
        raise ConfigError("srcList ALL needs an Amazon ECR source; list images with srcImageList instead")

    def tags(self, repository: ImageRef) -> list[str]:
        key = (repository.registry, repository.repository)
        with self._lock:
            if key in self._tag_lists:
                return list(self._tag_lists[key])
        client = self._clients.get(repository.registry)
        tags = retry_transient(lambda: client.list_tags(repository.repository))
        with self._lock:
            self._tag_lists[key] = list(tags)
        return tags

    def pushed_at(self, repository: ImageRef) -> Mapping[str, float]:
        """The distribution API reports no push times (a config's `created` is build time)."""
        return {}

    def manifest(self, ref: ImageRef) -> bytes | None:
        client = self._clients.get(ref.registry)
        return retry_transient(lambda: client.get_manifest(ref.repository, ref.reference))

    def referrers(self, ref: ImageRef) -> list[dict[str, object]] | None:
        """One subject's referrers; after a registry's API failed (unreachable, denied), None for the run.

        Without that, an unreachable API costs every image of a no-op run its retries and a warning.
        """
        with self._lock:
            if ref.registry in self._referrers_failed:
                return None
        client = self._clients.get(ref.registry)
        try:
            return retry_transient(lambda: list_referrers(client, ref.repository, ref.reference))
        except TransferError as exc:
            with self._lock:
                self._referrers_failed.add(ref.registry)
            raise type(exc)(f"{exc}; not asked again this run", retry_after=exc.retry_after) from None

    def _head(self, ref: ImageRef) -> DigestResult:
        client = self._clients.get(ref.registry)
        try:
            info = retry_transient(lambda: client.head_manifest(ref.repository, ref.reference))
        except TransferError as exc:
            return exc
        return info.digest if info else None

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]:
        if len(refs) <= 1:
            return [self._head(r) for r in refs]
        return each_in_threads(self._head, refs, min(self._concurrency, len(refs)))

    def prepare(self, repositories: Sequence[str]) -> None:
        """A distribution registry creates repositories on first push."""
