"""Where a source image lands: destPrefix + the repository path as the user wrote it.

The host is dropped (`quay.io/coreos/etcd` -> `coreos/etcd`) and Docker Hub's implicit
`library/` is not added (`nginx` -> `nginx`). The old plugin kept the registry host in the
repository name and ignored destPrefix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ecr_transfer.references import ALL_TAGS, MAX_REPOSITORY_LENGTH, ImageRef


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


def unlisted_target(entry: ImageRef, dest_registry: str, dest_prefix: str = "") -> str:
    """Where a `repo:ALL_TAGS` entry's tags would have landed: `dest/prefix/repo:ALL_TAGS`."""
    return f"{dest_registry}/{target_repository(entry, dest_prefix)}:{ALL_TAGS}"


def clashing_targets(
    sources: Sequence[ImageRef], targets: Sequence[ImageRef], lines: Mapping[ImageRef, int]
) -> list[str]:
    """Pairs of sources that would land on the same destination tag, each named with its list line.

    Copied one over the other, the tag would flip between them on every run. Digest-only
    targets cannot clash: the same digest is the same image.
    """
    first: dict[str, ImageRef] = {}
    problems: list[str] = []

    def where(ref: ImageRef) -> str:
        entry = ref if ref in lines else ImageRef(ref.registry, ref.repository, ref.path, all_tags=True)
        line = lines.get(entry)
        named = str(ref) if entry == ref else f"{ref} (from {entry})"
        return f"line {line}: {named}" if line is not None else named

    for source, target in zip(sources, targets, strict=True):
        if target.tag is None:
            continue
        earlier = first.setdefault(str(target), source)
        if earlier != source:
            problems.append(f"{where(earlier)} and {where(source)} both land on {target}; keep one of them")
    return problems
