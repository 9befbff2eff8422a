"""Signatures, SBOMs and attestations of the selected images (referrers), found when planning.

Two conventions name them by tag, so one tag list per repository finds them all (no request per
image, and a tag list is not a pull on Docker Hub):

- cosign: `sha256-<hex>.sig`, `.att`, `.sbom` refer to the image `sha256:<hex>`;
- the OCI 1.1 tag schema (registries without the referrers API, such as distribution 2.8):
  `sha256-<hex>` is an index listing the referrers of `sha256:<hex>` (an SBOM artifact, a signature).

Referrers of referrers count too (a signed SBOM): every referrer found, and every manifest a
tag-schema index lists, is a subject in turn. Each referrer is planned like any tag, so it is
copied only when the destination lacks it or differs, and one added later arrives on the next
run. They are copied byte for byte through the registry API (registry.exact), never by skopeo.

Where the source has the OCI 1.1 referrers API (`/v2/<name>/referrers/<digest>` on newer registries;
not yet for an ECR source), it is asked too, once per subject: it knows referrers no tag
names (Notation, cosign in OCI 1.1 mode). Those are planned by digest. A registry without it
(distribution 2.8) is asked once per run, then not again.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ecr_transfer.catalog import SourceCatalog
from ecr_transfer.errors import TransferError
from ecr_transfer.references import ImageRef

log = logging.getLogger(__name__)

REFERRER_REASON = "referrer of "
"""How a referrer's work item's reason starts: the copier copies those exactly (registry.exact)."""

_REFERRER_TAG = re.compile(r"sha256-([a-f0-9]{64})(\.(?:sig|att|sbom))?\Z")


def subject_of(tag: str | None) -> str | None:
    """`sha256-<hex>.sig` -> `sha256:<hex>`; None for a tag that names no subject."""
    match = _REFERRER_TAG.match(tag or "")
    return f"sha256:{match[1]}" if match else None


def is_referrer_tag(tag: str | None) -> bool:
    return subject_of(tag) is not None


@dataclass(frozen=True, slots=True)
class Referrer:
    ref: ImageRef
    """The referrer's tag at the source (`host/repo:sha256-<hex>.sig`)."""
    subject: str
    """The image it refers to, `host/repo@sha256:<hex>`."""
    digest: str


def _children(source: SourceCatalog, ref: ImageRef, digest: str) -> list[str]:
    """Digests a tag-schema referrers index lists (each may have referrers of its own)."""
    try:
        body = source.manifest(ref.with_digest(digest))
        doc = json.loads(body) if body else {}
    except (TransferError, ValueError) as exc:
        log.warning("%s: referrers index not read (%s); referrers of its entries not looked for", ref, exc)
        return []
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    return [str(m["digest"]) for m in manifests or [] if isinstance(m, dict) and "digest" in m]


def discover(source: SourceCatalog, subjects: Sequence[tuple[ImageRef, str]]) -> list[Referrer]:
    """Every referrer tag of the given (image, digest) pairs, transitively, one tag list per repository.

    A repository whose tags cannot be listed is logged and left for the next run: its images
    are still transferred.
    """
    repositories: dict[ImageRef, set[str]] = {}
    for image, digest in subjects:
        entry = ImageRef(image.registry, image.repository, image.path, all_tags=True)
        repositories.setdefault(entry, set()).add(digest)
    found: list[Referrer] = []
    for entry, digests in repositories.items():
        try:
            tags = source.tags(entry)
        except TransferError as exc:
            log.warning("%s: tags not listed (%s); its referrers are looked for on the next run", entry, exc)
            continue
        by_subject: dict[str, list[str]] = {}
        for tag in sorted(tags):
            subject = subject_of(tag)
            if subject is not None:
                by_subject.setdefault(subject, []).append(tag)
        seen: set[str] = set()
        frontier = sorted(digests)
        while frontier:
            subject = frontier.pop(0)
            if subject in seen:
                continue
            seen.add(subject)
            subject_ref = f"{entry.registry}/{entry.repository}@{subject}"
            refs = [entry.with_tag(t) for t in by_subject.get(subject, [])]
            for ref, looked_up in zip(refs, source.digests(refs) if refs else [], strict=True):
                if not isinstance(looked_up, str):
                    log.warning("%s: referrer not looked up (%s); tried again on the next run", ref, looked_up)
                    continue
                found.append(Referrer(ref=ref, subject=subject_ref, digest=looked_up))
                frontier.append(looked_up)
                if ref.tag and "." not in ref.tag:  # a tag-schema index: its entries are subjects too
                    frontier.extend(_children(source, ref, looked_up))
            for digest in _from_api(source, entry, subject):
                if digest not in seen and digest not in frontier:
                    pinned = ImageRef(entry.registry, entry.repository, entry.path, digest=digest)
                    found.append(Referrer(ref=pinned, subject=subject_ref, digest=digest))
                    frontier.append(digest)
    return found


def _from_api(source: SourceCatalog, entry: ImageRef, subject: str) -> list[str]:
    """Digests the registry's referrers API lists for `subject` (none without the API)."""
    try:
        listed = source.referrers(ImageRef(entry.registry, entry.repository, entry.path, digest=subject))
    except TransferError as exc:
        log.warning("%s@%s: referrers API not read (%s); tried again on the next run", entry, subject, exc)
        return []
    return [str(d["digest"]) for d in listed or []]
