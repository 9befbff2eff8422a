"""Platform subsets (`platforms: [linux/amd64, linux/arm64]`): which children of an index to copy,
and the index that then holds just them.

skopeo 1.9.3 cannot write such an index (`--multi-arch` takes only system|all|index-only), so
the copier copies each chosen child by digest with skopeo (byte for byte), then PUTs the index
built here, by tag, with the registry client. The index is the source's document with its
`manifests` list narrowed and nothing else changed, serialized one fixed way: the same source
index and the same `platforms` always give the same bytes, hence the same digest, run after run.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ecr_transfer.errors import PermanentError
from ecr_transfer.registry.mediatypes import DOCKER_V2, INDEX_TYPES, OCI_INDEX, OCI_MANIFEST

_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?\Z")
_IMAGE_TYPES = frozenset({OCI_MANIFEST, DOCKER_V2})
# BuildKit stores provenance/SBOM attestations as extra index children pointing at the platform
# they describe: they travel with their platform, and are dropped with it.
_REFERENCE_TYPE = "vnd.docker.reference.type"
_REFERENCE_DIGEST = "vnd.docker.reference.digest"


def parse_platforms(value: Any) -> tuple[str, ...]:
    """`[linux/amd64, linux/arm/v7]` or `linux/amd64,linux/arm64` -> normalized, duplicates dropped."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = [str(v).strip() for v in value]
    else:
        raise ValueError(f"expected a list of os/architecture platforms, got {type(value).__name__}")
    result: list[str] = []
    for item in items:
        platform = item.lower()
        if not _PLATFORM.match(platform):
            raise ValueError(f"{item!r} is not os/architecture[/variant] (for example linux/arm64 or linux/arm/v7)")
        if platform not in result:
            result.append(platform)
    return tuple(result)


def signature(platforms: Sequence[str]) -> str:
    """What the ledger's reason records, so a changed `platforms` setting is a reason to copy again."""
    return "platforms " + ",".join(sorted(platforms))


def _platform_of(descriptor: dict[str, Any]) -> str | None:
    platform = descriptor.get("platform")
    if not isinstance(platform, dict):
        return None
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts).lower()


def _wanted(platform: str | None, platforms: Sequence[str]) -> bool:
    """`linux/arm64` takes every arm64 variant; `linux/arm/v7` only v7."""
    if platform is None:
        return False
    return any(platform == p or (p.count("/") == 1 and platform.startswith(p + "/")) for p in platforms)


def children_of(body: bytes | None, platforms: Sequence[str] = ()) -> list[str]:
    """Digests an image index lists (only those of `platforms`, when given); [] for anything else."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return []
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        return []
    if (doc.get("mediaType") or OCI_INDEX) not in INDEX_TYPES:
        return []
    listed = [d for d in doc["manifests"] if isinstance(d, dict) and isinstance(d.get("digest"), str)]
    return [str(d["digest"]) for d in listed if not platforms or _wanted(_platform_of(d), platforms)]


@dataclass(frozen=True, slots=True)
class Subset:
    children: tuple[str, ...]
    """Digests of the children to copy, in the index's order (attestations after their platform's)."""
    body: bytes
    """The new index: exactly the bytes to PUT."""
    media_type: str
    digest: str
    whole: bool
    """Every child is wanted: copy the source index as it is (its own digest, no new index)."""
    artifacts: tuple[str, ...] = ()
    """Children whose descriptor carries `artifactType` (attestations, SBOMs): copied exactly, not by skopeo."""


def select(body: bytes, platforms: Sequence[str], *, media_type: str | None = None, what: str = "") -> Subset | None:
    """The subset of an index that `platforms` names; None when `body` is not a multi-platform index.

    An index none of whose platforms is wanted raises PermanentError naming the ones it has: it
    would fail the same way on every run.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        return None
    kind = doc.get("mediaType") or media_type or OCI_INDEX
    descriptors = [d for d in doc["manifests"] if isinstance(d, dict)]
    if kind not in INDEX_TYPES or len(descriptors) != len(doc["manifests"]):
        return None
    if any(d.get("mediaType") not in _IMAGE_TYPES for d in descriptors):
        return None  # a nested index or an artifact list: not platforms to choose from
    chosen = [d for d in descriptors if _wanted(_platform_of(d), platforms)]
    if not chosen:
        present = sorted({p for d in descriptors if (p := _platform_of(d)) and p != "unknown/unknown"})
        raise PermanentError(
            f"{what or 'index'}: none of the platforms {', '.join(platforms)} is in the index "
            f"(it has {', '.join(present) or 'no platforms'})"
        )
    digests = {d.get("digest") for d in chosen}

    def attests_chosen(d: dict[str, Any]) -> bool:
        notes = d.get("annotations") or {}
        return notes.get(_REFERENCE_TYPE) == "attestation-manifest" and notes.get(_REFERENCE_DIGEST) in digests

    kept = [d for d in descriptors if d in chosen or attests_chosen(d)]
    whole = len(kept) == len(descriptors)
    new = body if whole else json.dumps({**doc, "manifests": kept}, separators=(",", ":"), ensure_ascii=False).encode()
    return Subset(
        children=tuple(dict.fromkeys(str(d["digest"]) for d in kept)),
        body=new,
        media_type=kind,
        digest="sha256:" + hashlib.sha256(new).hexdigest(),
        whole=whole,
    )


def kept_exactly(body: bytes, media_type: str | None = None) -> Subset | None:
    """An index skopeo 1.9.3 would rewrite (a descriptor carries `artifactType`, which it drops, so the
    digest changes and every later run would see a mismatch): the whole index, to PUT as it is.
    None for any other manifest."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or (doc.get("mediaType") or media_type or OCI_INDEX) not in INDEX_TYPES:
        return None
    descriptors = doc.get("manifests")
    if not isinstance(descriptors, list) or not all(isinstance(d, dict) and "digest" in d for d in descriptors):
        return None
    artifacts = tuple(str(d["digest"]) for d in descriptors if "artifactType" in d)
    if not artifacts:
        return None
    return Subset(
        children=tuple(dict.fromkeys(str(d["digest"]) for d in descriptors)),
        body=body,
        media_type=str(doc.get("mediaType") or media_type or OCI_INDEX),
        digest="sha256:" + hashlib.sha256(body).hexdigest(),
        whole=True,
        artifacts=artifacts,
    )
