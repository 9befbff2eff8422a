"""Where a source image lands: destPrefix + the repository path as the user wrote it.

The host is dropped (`quay.io/coreos/etcd` -> `coreos/etcd`) and Docker Hub's implicit
`library/` is not added (`nginx` -> `nginx`). The old plugin kept the registry host in the
repository name and ignored destPrefix.
"""

from __future__ import annotations

from ecr_transfer.references import MAX_REPOSITORY_LENGTH, ImageRef


def target_repository(source: ImageRef, dest_prefix: str = "") -> str:
    prefix = dest_prefix.strip("/")
    return f"{prefix}/{source.path}" if prefix else source.path


def target_ref(source: ImageRef, dest_registry: str, dest_prefix: str = "") -> ImageRef:
    """Tags are kept; digest-only references stay digest-only."""
    repository = target_repository(source, dest_prefix)
    if len(repository) > MAX_REPOSITORY_LENGTH:
        raise ValueError(
            f"destination repository {repository!r} is {len(repository)} characters long; "
            f"the limit is {MAX_REPOSITORY_LENGTH}"
        )
    return ImageRef(dest_registry, repository, repository, tag=source.tag, digest=None if source.tag else source.digest)
