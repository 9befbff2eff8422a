"""Copying the platforms of an index side by side, then the index alone.

skopeo 1.9.3 copies the platforms of an index one after another (`--image-parallel-copies`
arrived in 1.16): over a link with tens of milliseconds of latency every platform pays
skopeo's dozens of sequential round trips again, so an eight-platform image costs eight copies
end to end. Copying each platform by digest in its own skopeo process, then the index with
`--multi-arch index-only` (its children are all there by then), costs the slowest platform
plus one small manifest copy. Blobs, manifests and the index digest are the same as with
`--all`: every piece is copied byte for byte and addressed by digest.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from ecr_transfer import envvars
from ecr_transfer.errors import ConflictError, PermanentError, TransferError
from ecr_transfer.model import WorkItem
from ecr_transfer.registry.client import RegistryClients
from ecr_transfer.registry.mediatypes import DOCKER_V2, OCI_MANIFEST
from ecr_transfer.scheduler import CopyScheduler
from ecr_transfer.settings import env_count

DEFAULT_PLATFORM_COPIES = 4
MAX_PLATFORMS = 64
"""An index with more children than this is copied whole (it is more likely an artifact list)."""
_IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_V2})


def platform_copies(environ: Mapping[str, str] | None = None) -> int:
    """How many platforms of one index are copied at once (1: the whole index in one skopeo)."""
    return env_count(envvars.PLATFORM_COPIES, DEFAULT_PLATFORM_COPIES, environ)


def platforms(body: bytes) -> list[str] | None:
    """Child manifest digests of an index worth copying side by side; None: copy it whole.

    Only indexes whose children are all plain image manifests qualify: a nested index or an
    unknown child type is left to skopeo's own `--all` handling.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    children = doc.get("manifests") if isinstance(doc, dict) else None
    if not isinstance(children, list) or not 2 <= len(children) <= MAX_PLATFORMS:
        return None
    digests: list[str] = []
    for child in children:
        if not isinstance(child, dict) or child.get("mediaType") not in _IMAGE_TYPES:
            return None
        digest = child.get("digest")
        if not isinstance(digest, str) or not digest.startswith("sha256:"):
            return None
        digests.append(digest)
    unique = list(dict.fromkeys(digests))
    return unique if len(unique) >= 2 else None


def copy_platforms(
    clients: RegistryClients,
    children: list[WorkItem],
    copy_one: Callable[[WorkItem], None],
    parallel: int,
    demand: Mapping[str, int] | None = None,
) -> None:
    """Run `copy_one(child)` for every platform, `parallel` at a time, all of them to the end.

    Platforms of one index can share blobs (a common layer, an attestation's base): they are
    ordered like whole images are (blobsched), so a shared blob is uploaded once and mounted
    or skipped by the others; the platform bringing blobs that other images of the run wait
    for (`demand`: shared blob -> bytes of the images needing it) goes first. Raises the most
    telling failure: a conflict or permanent error (retrying cannot help) before a transient
    one, naming the platform it came from.
    """
    failures: list[tuple[WorkItem, TransferError]] = []

    def attempt(child: WorkItem) -> TransferError | None:
        try:
            copy_one(child)
        except TransferError as exc:
            return exc  # every platform runs to the end; the most telling failure is raised below
        return None

    def finished(child: WorkItem, exc: TransferError | None) -> bool:
        if exc is not None:
            failures.append((child, exc))
        return exc is None

    # No stop event: the run's own stop reaches each platform's skopeo through copy_one.
    scheduler: CopyScheduler[WorkItem, TransferError | None] = CopyScheduler(clients, children, demand)
    scheduler.run(
        attempt, workers=min(parallel, len(children)), finished=finished, stopped=lambda _: None, name="platform"
    )
    if not failures:
        return
    failures.sort(key=lambda f: 0 if isinstance(f[1], (ConflictError, PermanentError)) else 1)
    child, exc = failures[0]
    more = f" (and {len(failures) - 1} more platform(s))" if len(failures) > 1 else ""
    raise type(exc)(f"platform {child.source_digest}: {exc}{more}", retry_after=exc.retry_after) from exc
