"""What kind of referrer a manifest is (its artifact type), and the `referrerTypes` setting.

The artifact type of a referrer found through the OCI 1.1 referrers API or a tag-schema referrers
index follows OCI image-spec 1.1: the manifest's `artifactType`, else its config descriptor's
`mediaType`. Both listings carry that value in each descriptor's `artifactType` (the spec has the
registry, or the client pushing the fallback index, pull it up), so it is read from there; a
descriptor without one (go-containerregistry wrote such fallback indexes) is decided by reading
the manifest itself.

cosign's tag-named referrers (`sha256-<hex>.sig`, `.att`, `.sbom`) carry no artifactType (their
config is an ordinary image config), so they count as the type cosign itself gives the same kind
when it attaches it as an OCI 1.1 referrer: `application/vnd.dev.cosign.artifact.<kind>.v1+json`
(cosign's `ArtifactType(attName)` for `sig`, `att`, `sbom`).
"""

from __future__ import annotations

import json
import re
from typing import Any

COSIGN_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
COSIGN_ATTESTATION = "application/vnd.dev.cosign.artifact.att.v1+json"
COSIGN_SBOM = "application/vnd.dev.cosign.artifact.sbom.v1+json"
COSIGN_TAG_TYPES = {".sig": COSIGN_SIGNATURE, ".att": COSIGN_ATTESTATION, ".sbom": COSIGN_SBOM}
"""cosign tag suffix -> the artifact type that kind of referrer counts as."""

# RFC 6838 restricted names (what image-spec 1.1 requires of artifactType), parameters not allowed.
_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_NAME}/{_NAME}\Z")


def cosign_type(tag: str) -> str | None:
    """`sha256-<hex>.sig` -> cosign's signature type; None for a tag without a cosign suffix."""
    for suffix, artifact_type in COSIGN_TAG_TYPES.items():
        if tag.endswith(suffix):
            return artifact_type
    return None


def of_manifest(body: bytes | None) -> str | None:
    """The OCI 1.1 artifact type of a manifest: `artifactType`, else the config's `mediaType`."""
    try:
        doc: Any = json.loads(body) if body else None
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    declared = doc.get("artifactType")
    if isinstance(declared, str) and declared:
        return declared
    config = doc.get("config")
    media_type = config.get("mediaType") if isinstance(config, dict) else None
    return media_type if isinstance(media_type, str) and media_type else None


def of_descriptor(descriptor: dict[str, object]) -> str | None:
    """The artifact type a referrers listing gives an entry (None when it gives none)."""
    declared = descriptor.get("artifactType")
    return declared if isinstance(declared, str) and declared else None


def parse_referrer_types(value: Any) -> tuple[str, ...]:
    """A YAML list, a JSON array, or comma-separated text of media types; ValueError says which is wrong."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a valid JSON array: {exc}") from None
        else:
            value = [part.strip() for part in text.split(",")]
    if not isinstance(value, list | tuple):
        raise ValueError(f"expected a list of artifact types (media types), got {type(value).__name__}")
    if not value:
        raise ValueError("an empty list would copy no referrer: set copyReferrers false for that")
    problems = []
    for n, item in enumerate(value, start=1):
        if not isinstance(item, str):
            problems.append(f"item {n} is not text: {item!r}")
        elif not item.strip():
            problems.append(f"item {n} is empty")
        elif not _MEDIA_TYPE.match(item.strip()):
            problems.append(f"{item.strip()!r} is not a media type (type/subtype, such as application/spdx+json)")
    if problems:
        raise ValueError("; ".join(problems))
    return tuple(dict.fromkeys(str(v).strip() for v in value))
