"""What the planner asks of each side, and the plain-registry implementation.

ECR implements the same protocols with bulk DescribeImages calls (ecr_transfer.ecr); a
plain registry answers with manifest HEADs, run concurrently with a bounded pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from ecr_transfer.errors import ConfigError, TransferError
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.client import RegistryClients

Digest = str | None
DigestResult = Digest | TransferError
"""A digest, None when absent, or the error that kept us from knowing."""


class SourceCatalog(Protocol):
    default_registry: str | None
    """Registry of list entries written without a host; None means Docker Hub rules."""

    def all_images(self) -> list[ImageRef]:
        """Every tagged image (srcList ALL)."""
        ...

    def tags(self, repository: ImageRef) -> list[str]: ...

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]: ...


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

    def all_images(self) -> list[ImageRef]:
        raise ConfigError("srcList ALL needs an Amazon ECR source; list images with srcImageList instead")

    def tags(self, repository: ImageRef) -> list[str]:
        return self._clients.get(repository.registry).list_tags(repository.repository)

    def _head(self, ref: ImageRef) -> DigestResult:
        try:
            info = self._clients.get(ref.registry).head_manifest(ref.repository, ref.reference)
        except TransferError as exc:
            return exc
        return info.digest if info else None

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]:
        if len(refs) <= 1:
            return [self._head(r) for r in refs]
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(refs))) as pool:
            return list(pool.map(self._head, refs))

    def prepare(self, repositories: Sequence[str]) -> None:
        """A distribution registry creates repositories on first push."""
