"""Amazon ECR as source and destination catalog: bulk DescribeImages instead of one HEAD per tag.

Source: `srcList: ALL` is DescribeRepositories + one paginated DescribeImages per repository
(tagged images only, 1000 per page); `repo:ALL_TAGS` is the same DescribeImages; the digests of
listed images come from those listings, so planning makes no per-tag request at all.

Destination: the incremental plan lists each destination repository once (paginated) and
answers every tag from that listing; the listings are cached for the run. A call for a single
reference is a fresh point lookup (DescribeImages with one imageId): that is how the copier
verifies what it has just pushed, so it must never come from the cache.

`prepare()` creates a missing repository with the configured settings before the first push
(a push to a missing repository fails). Losing a creation race to another writer is fine; any
other error is reported with ECR's own code and message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_transfer.catalog import DigestResult, RegistryCatalog
from ecr_transfer.ecr.pacing import EcrPacing
from ecr_transfer.errors import ConfigError, PermanentError, TransferError, TransientError
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.mediatypes import MANIFEST_TYPES
from ecr_transfer.settings import RepositorySettings

PAGE_SIZE = 1000
"""DescribeRepositories/DescribeImages accept at most 1000 results per page."""
_TRANSIENT = {
    "ThrottlingException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "ServerException",
    "InternalServerError",
    "RequestTimeout",
}
_ABSENT = {"ImageNotFoundException", "RepositoryNotFoundException"}

log = logging.getLogger(__name__)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Error"))


def describe(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc)


def as_transfer_error(what: str, exc: ClientError | BotoCoreError) -> TransferError:
    """Throttling (after botocore's retries), 5xx and network errors are transient; the rest permanent."""
    transient = not isinstance(exc, ClientError) or error_code(exc) in _TRANSIENT
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) if isinstance(exc, ClientError) else 0
    kind = TransientError if transient or int(status or 0) >= 500 else PermanentError
    return kind(f"{what}: {describe(exc)}")


@dataclass
class _Listing:
    """Tag -> digest of one repository, from a complete DescribeImages listing."""

    tags: dict[str, str] = field(default_factory=dict)
    pushed: dict[str, float] = field(default_factory=dict)
    """Tag -> imagePushedAt of its image (epoch seconds), for tagLatest."""
    digests: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)
    """Digest -> imageSizeInBytes (compressed layers; the largest platform's for an index)."""
    untagged_included: bool = False


class EcrCatalog:
    """One ECR registry (account + region) through the ECR API. Thread-safe."""

    def __init__(
        self,
        client: Any,
        *,
        registry: str,
        registry_id: str,
        repository_settings: RepositorySettings | None = None,
        pacing: EcrPacing | None = None,
        fallback: RegistryCatalog | None = None,
        concurrency: int = 4,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self._client = client
        self.registry = registry
        self.default_registry: str | None = registry
        self.registry_id = registry_id
        self._repo_settings = repository_settings or RepositorySettings()
        self._pacing = pacing
        self._fallback = fallback
        self._concurrency = max(1, concurrency)
        self._page_size = min(PAGE_SIZE, page_size)
        self._lock = threading.Lock()
        self._listings: dict[str, _Listing] = {}
        self._existing: set[str] = set()
        self._missing: set[str] = set()
        if pacing is not None:
            pacing.attach(client)

    # -- listing ------------------------------------------------------------------------------
    def _pages(self, operation: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator(operation)
        yield from paginator.paginate(
            registryId=self.registry_id, PaginationConfig={"PageSize": self._page_size}, **kwargs
        )

    def _list(self, repository: str, *, untagged: bool = False) -> _Listing | None:
        """Every (tagged) image of a repository, cached; None when the repository does not exist."""
        with self._lock:
            cached = self._listings.get(repository)
            if cached is not None and (cached.untagged_included or not untagged):
                return cached
            if repository in self._missing:
                return None
        listing = _Listing(untagged_included=untagged)
        try:
            for page in self._pages(
                "describe_images", repositoryName=repository, filter={"tagStatus": "ANY" if untagged else "TAGGED"}
            ):
                for image in page.get("imageDetails", []):
                    digest = image["imageDigest"]
                    listing.digests.add(digest)
                    if isinstance(image.get("imageSizeInBytes"), int):
                        listing.sizes[digest] = image["imageSizeInBytes"]
                    pushed = image.get("imagePushedAt")
                    for tag in image.get("imageTags") or []:
                        listing.tags[tag] = digest
                        if pushed is not None:
                            listing.pushed[tag] = pushed.timestamp()
        except ClientError as exc:
            if error_code(exc) == "RepositoryNotFoundException":
                with self._lock:
                    self._missing.add(repository)
                return None
            raise as_transfer_error(f"cannot list images of {self.registry}/{repository}", exc) from None
        except BotoCoreError as exc:
            raise as_transfer_error(f"cannot list images of {self.registry}/{repository}", exc) from None
        with self._lock:
            self._listings[repository] = listing
            self._existing.add(repository)
        return listing

    def repositories(self) -> list[str]:
        """Every repository of the registry (DescribeRepositories, paginated)."""
        names: list[str] = []
        try:
            for page in self._pages("describe_repositories"):
                names.extend(r["repositoryName"] for r in page.get("repositories", []))
        except (ClientError, BotoCoreError) as exc:
            raise ConfigError(
                f"cannot list the repositories of {self.registry}: {describe(exc)}", source="srcList ALL"
            ) from None
        with self._lock:
            self._existing.update(names)
        return sorted(names)

    def all_images(self) -> list[ImageRef]:
        """Every tagged image of every repository (srcList ALL)."""
        names = self.repositories()

        def listing(name: str) -> _Listing | TransferError | None:
            try:
                return self._list(name)
            except TransferError as exc:
                return exc

        with ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="ecr-list") as pool:
            listings = list(pool.map(listing, names))
        images: list[ImageRef] = []
        problems: list[str] = []
        for name, found in zip(names, listings, strict=True):
            if isinstance(found, TransferError):
                problems.append(str(found))
            elif found is None:
                log.info("repository %s disappeared while listing; skipped", name)
            else:
                images.extend(ImageRef(self.registry, name, name, tag=t) for t in sorted(found.tags))
        if problems:
            raise ConfigError(problems, source="srcList ALL")
        return images

    def tags(self, repository: ImageRef) -> list[str]:
        if repository.registry != self.registry:
            if self._fallback is None:
                raise PermanentError(f"{repository}: not in the configured ECR registry {self.registry}")
            return self._fallback.tags(repository)
        listing = self._list(repository.repository)
        if listing is None:
            raise PermanentError(f"repository {repository.repository} does not exist in {self.registry}")
        return sorted(listing.tags)

    def pushed_at(self, repository: ImageRef) -> Mapping[str, float]:
        if repository.registry != self.registry:
            return self._fallback.pushed_at(repository) if self._fallback is not None else {}
        listing = self._list(repository.repository)
        return dict(listing.pushed) if listing is not None else {}

    def image_size(self, ref: ImageRef) -> int | None:
        """ECR's imageSizeInBytes of a listed image (no API call of its own), None when not known.

        The Lambda fast path bounds a push run's bytes with it (ecr_transfer.cloud.fast_copy).
        """
        if ref.registry != self.registry:
            return None
        with self._lock:
            listing = self._listings.get(ref.repository)
        if listing is None:
            return None
        digest = ref.digest or listing.tags.get(ref.tag or "")
        return listing.sizes.get(digest) if digest else None

    def manifest(self, ref: ImageRef) -> bytes | None:
        """BatchGetImage: the stored manifest bytes (the registry client would need a token of its own)."""
        if ref.registry != self.registry:
            return self._fallback.manifest(ref) if self._fallback is not None else None
        image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag}
        try:
            response = self._client.batch_get_image(
                registryId=self.registry_id,
                repositoryName=ref.repository,
                imageIds=[image_id],
                acceptedMediaTypes=list(MANIFEST_TYPES),
            )
        except (ClientError, BotoCoreError) as exc:
            raise as_transfer_error(f"cannot read {ref}", exc) from None
        images = response.get("images") or []
        return str(images[0]["imageManifest"]).encode() if images else None

    def referrers(self, ref: ImageRef) -> list[dict[str, object]] | None:
        """The registry's OCI 1.1 referrers API (`GET /v2/<name>/referrers/<digest>`), as for any registry.

        Amazon ECR serves it (OCI 1.1 since June 2024) and authorizes it as `ecr:BatchGetImage`, the
        permission ListImageReferrers is documented to need; it lists what refers to an image by its
        `subject` though no tag names it (Notation, cosign in OCI 1.1 mode). Asked through the
        registry clients with this registry's token, like the copier's reads.
        """
        return self._fallback.referrers(ref) if self._fallback is not None else None

    # -- digests ------------------------------------------------------------------------------
    def _point_lookup(self, ref: ImageRef) -> DigestResult:
        image_id = {"imageDigest": ref.digest} if ref.digest else {"imageTag": ref.tag}
        try:
            response = self._client.describe_images(
                registryId=self.registry_id, repositoryName=ref.repository, imageIds=[image_id]
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in _ABSENT:
                with self._lock:
                    (self._missing if code == "RepositoryNotFoundException" else self._existing).add(ref.repository)
                return None
            return as_transfer_error(f"cannot look up {ref}", exc)
        except BotoCoreError as exc:
            return as_transfer_error(f"cannot look up {ref}", exc)
        with self._lock:
            self._existing.add(ref.repository)
            self._missing.discard(ref.repository)
        details = response.get("imageDetails") or []
        return str(details[0]["imageDigest"]) if details else None

    def _group_digests(self, repository: str, refs: list[ImageRef]) -> list[DigestResult]:
        try:
            listing = self._list(repository, untagged=any(r.digest and not r.tag for r in refs))
        except TransferError as exc:
            return [exc for _ in refs]
        if listing is None:
            return [None for _ in refs]
        results: list[DigestResult] = []
        for ref in refs:
            if ref.digest:
                found = ref.digest in listing.digests
                results.append(
                    ref.digest if found else (None if listing.untagged_included else self._point_lookup(ref))
                )
            else:
                results.append(listing.tags.get(ref.tag or ""))
        return results

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]:
        results: list[DigestResult] = [None] * len(refs)
        foreign = [i for i, r in enumerate(refs) if r.registry != self.registry]
        if foreign:
            if self._fallback is None:
                for i in foreign:
                    results[i] = PermanentError(f"{refs[i]}: not in the configured ECR registry {self.registry}")
            else:
                for i, found in zip(foreign, self._fallback.digests([refs[i] for i in foreign]), strict=True):
                    results[i] = found
        own = [i for i, r in enumerate(refs) if r.registry == self.registry]
        if len(own) == 1 and len(refs) == 1:
            results[own[0]] = self._point_lookup(refs[own[0]])
            return results
        groups: dict[str, list[int]] = {}
        for i in own:
            groups.setdefault(refs[i].repository, []).append(i)

        def answer(repository: str) -> list[DigestResult]:
            return self._group_digests(repository, [refs[i] for i in groups[repository]])

        with ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="ecr-digests") as pool:
            for repository, answers in zip(groups, pool.map(answer, groups), strict=True):
                for i, digest in zip(groups[repository], answers, strict=True):
                    results[i] = digest
        return results

    # -- destination --------------------------------------------------------------------------
    def _create_arguments(self, repository: str) -> dict[str, Any]:
        settings = self._repo_settings
        encryption: dict[str, str] = {"encryptionType": settings.encryption}
        if settings.encryption == "KMS" and settings.kms_key:
            encryption["kmsKey"] = settings.kms_key
        arguments: dict[str, Any] = {
            "registryId": self.registry_id,
            "repositoryName": repository,
            "imageTagMutability": settings.tag_mutability,
            "imageScanningConfiguration": {"scanOnPush": settings.scan_on_push},
            "encryptionConfiguration": encryption,
        }
        if settings.tags:
            arguments["tags"] = [{"Key": k, "Value": v} for k, v in sorted(settings.tags.items())]
        return arguments

    def prepare(self, repositories: Sequence[str]) -> None:
        """Create each repository unless it is known to exist (the plan's listing tells)."""
        for repository in repositories:
            with self._lock:
                if repository in self._existing:
                    continue
            try:
                self._client.create_repository(**self._create_arguments(repository))
                log.info("created repository %s/%s", self.registry, repository)
            except ClientError as exc:
                if error_code(exc) != "RepositoryAlreadyExistsException":
                    raise as_transfer_error(f"cannot create repository {repository} in {self.registry}", exc) from None
            except BotoCoreError as exc:
                raise as_transfer_error(f"cannot create repository {repository} in {self.registry}", exc) from None
            with self._lock:
                self._existing.add(repository)
                self._missing.discard(repository)
                self._listings.pop(repository, None)

    def before_push(self, ref: ImageRef) -> None:
        """Spend one PutImage slot of this registry's pacing before skopeo pushes a manifest."""
        if self._pacing is not None:
            self._pacing.before_push()
