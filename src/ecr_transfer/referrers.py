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

Where the source has the OCI 1.1 referrers API (`/v2/<name>/referrers/<digest>` on newer registries
and Amazon ECR), it is asked too, once per subject: it knows referrers no tag names (Notation,
cosign in OCI 1.1 mode). Those are planned by digest. A registry without it (distribution 2.8) is
asked once per run, then not again.

`referrerTypes` keeps only referrers of the listed artifact types (ecr_transfer.artifacttypes says
what type each kind is). A referrer left out is not a subject either: its own referrers (the
signature of an SBOM left out) stay behind with it. A tag-schema index is copied byte for byte only
when every entry it lists is kept; otherwise its kept entries are copied by digest (a registry with
the referrers API, such as ECR, lists them by their `subject`) and the index is left out, saying why.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ecr_transfer import artifacttypes, subsets
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


@dataclass(frozen=True, slots=True)
class LeftOut:
    """A referrer `referrerTypes` keeps from being copied, and why (plan --json lists it under "filtered")."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class Discovery:
    found: tuple[Referrer, ...] = ()
    left_out: tuple[LeftOut, ...] = ()


@dataclass
class _Walk:
    """One repository's referrers, subject after subject, under the run's `referrerTypes`."""

    source: SourceCatalog
    entry: ImageRef
    types: frozenset[str]
    found: list[Referrer] = field(default_factory=list)
    left_out: list[LeftOut] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    frontier: list[str] = field(default_factory=list)

    def pinned(self, digest: str) -> ImageRef:
        return ImageRef(self.entry.registry, self.entry.repository, self.entry.path, digest=digest)

    def type_of(self, descriptor: dict[str, object]) -> str | None:
        """The listing's artifactType, else the manifest's own (OCI 1.1 rule), read only when filtering."""
        listed = artifacttypes.of_descriptor(descriptor)
        if listed is not None:
            return listed
        try:
            return artifacttypes.of_manifest(self.source.manifest(self.pinned(str(descriptor["digest"]))))
        except TransferError as exc:
            log.warning("%s@%s: manifest not read (%s); its type is unknown", self.entry, descriptor["digest"], exc)
            return None

    def refused(self, artifact_type: str | None, kind: str = "") -> str | None:
        """Why `referrerTypes` leaves a referrer of this type out; None when it is kept (or no filter is set)."""
        if not self.types or artifact_type in self.types:
            return None
        if artifact_type is None:
            return "referrerTypes: it has no artifact type (neither artifactType nor a config mediaType)"
        return f"referrerTypes: {artifact_type}{kind} is not listed"

    def leave_out(self, ref: ImageRef, reason: str) -> None:
        log.info("%s: not copied (%s)", ref, reason)
        self.left_out.append(LeftOut(source=str(ref), reason=reason))

    def keep(self, ref: ImageRef, subject: str, digest: str) -> None:
        self.found.append(Referrer(ref=ref, subject=f"{self.entry.registry}/{self.entry.repository}@{subject}",
                                   digest=digest))  # fmt: skip
        self.frontier.append(digest)

    def tagged(self, subject: str, tags: Sequence[str]) -> None:
        """The referrer tags of `subject`: cosign's, and the tag-schema index."""
        refs = []
        for tag in tags:
            cosign = artifacttypes.cosign_type(tag)
            why = self.refused(cosign, f" (cosign's type for a .{tag.rsplit('.', 1)[-1]} tag)") if cosign else None
            if why:  # decided by its name: not even looked up
                self.leave_out(self.entry.with_tag(tag), why)
            else:
                refs.append(self.entry.with_tag(tag))
        for ref, looked_up in zip(refs, self.source.digests(refs) if refs else [], strict=True):
            if not isinstance(looked_up, str):
                log.warning("%s: referrer not looked up (%s); tried again on the next run", ref, looked_up)
            elif ref.tag and "." not in ref.tag:
                self.tag_schema_index(subject, ref, looked_up)
            else:
                self.keep(ref, subject, looked_up)

    def tag_schema_index(self, subject: str, ref: ImageRef, digest: str) -> None:
        """The index whole when every entry is kept (its entries are subjects too); else its kept entries."""
        entries = _entries(self.source, ref, digest)
        verdicts = [(e, self.refused(self.type_of(e))) for e in entries] if self.types else [(e, None) for e in entries]
        dropped = [(e, why) for e, why in verdicts if why]
        if not dropped:
            self.keep(ref, subject, digest)
            self.frontier.extend(str(e["digest"]) for e in entries)
            return
        others = sorted({artifacttypes.of_descriptor(e) or "an untyped manifest" for e, _ in dropped})
        self.leave_out(ref, f"referrerTypes: this referrers index also lists {', '.join(others)}; "
                            "its entries of listed types are copied by digest")  # fmt: skip
        for entry, why in verdicts:
            entry_digest = str(entry["digest"])
            if why:
                self.leave_out(self.pinned(entry_digest), why)
            elif entry_digest not in self.seen and entry_digest not in self.frontier:
                self.keep(self.pinned(entry_digest), subject, entry_digest)

    def drain(self, by_subject: dict[str, list[str]]) -> None:
        while self.frontier:
            subject = self.frontier.pop(0)
            if subject in self.seen:
                continue
            self.seen.add(subject)
            self.tagged(subject, by_subject.get(subject, []))
            self.from_api(subject)

    def children(self, digest: str, platforms: Sequence[str] | None) -> list[str]:
        """The children of the selected image `digest` if it is an index (of `platforms` only, when set)."""
        if platforms is not None and not platforms:
            return []
        try:
            body = self.source.manifest(self.pinned(digest))
        except TransferError as exc:
            log.warning("%s@%s: not read (%s); referrers of its children looked for next run", self.entry, digest, exc)
            return []
        return subsets.children_of(body, platforms or ())

    def from_api(self, subject: str) -> None:
        for descriptor in _from_api(self.source, self.entry, subject):
            digest = str(descriptor["digest"])
            if digest in self.seen or digest in self.frontier:
                continue
            why = self.refused(self.type_of(descriptor)) if self.types else None
            if why:
                self.seen.add(digest)  # listed again by another subject: decided once
                self.leave_out(self.pinned(digest), why)
            else:
                self.keep(self.pinned(digest), subject, digest)


def _entries(source: SourceCatalog, ref: ImageRef, digest: str) -> list[dict[str, object]]:
    """The descriptors a tag-schema referrers index lists (each may have referrers of its own)."""
    try:
        body = source.manifest(ref.with_digest(digest))
        doc = json.loads(body) if body else {}
    except (TransferError, ValueError) as exc:
        log.warning("%s: referrers index not read (%s); referrers of its entries not looked for", ref, exc)
        return []
    manifests = doc.get("manifests") if isinstance(doc, dict) else None
    return [m for m in manifests or [] if isinstance(m, dict) and "digest" in m]


def discover(
    source: SourceCatalog,
    subjects: Sequence[tuple[ImageRef, str]],
    types: Collection[str] = (),
    platforms: Sequence[str] | None = None,
) -> Discovery:
    """Every referrer of the given (image, digest) pairs, transitively, one tag list per repository.

    `types` is `referrerTypes` (empty: every type). The children of a selected index are subjects
    too: those of `platforms` only when given (the platforms copied; () for none). A repository
    whose tags cannot be listed is logged and left for the next run: its images still transfer.
    """
    repositories: dict[ImageRef, set[str]] = {}
    for image, digest in subjects:
        entry = ImageRef(image.registry, image.repository, image.path, all_tags=True)
        repositories.setdefault(entry, set()).add(digest)
    found: list[Referrer] = []
    left_out: list[LeftOut] = []
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
        walk = _Walk(source, entry, frozenset(types), frontier=sorted(digests))
        walk.drain(by_subject)
        # `cosign sign --recursive` signs each platform manifest of an index too: referrer tags whose
        # subject nothing reached so far may be children's. Only then are the selected images read
        # (one manifest each, until every such tag is placed): an index's children become subjects.
        for digest in sorted(digests):
            if not set(by_subject) - walk.seen:
                break
            walk.frontier += [c for c in walk.children(digest, platforms) if c not in walk.seen]
            walk.drain(by_subject)
        found += walk.found
        left_out += walk.left_out
    return Discovery(found=tuple(found), left_out=tuple(left_out))


def _from_api(source: SourceCatalog, entry: ImageRef, subject: str) -> list[dict[str, object]]:
    """Descriptors the registry's referrers API lists for `subject` (none without the API)."""
    try:
        listed = source.referrers(ImageRef(entry.registry, entry.repository, entry.path, digest=subject))
    except TransferError as exc:
        log.warning("%s@%s: referrers API not read (%s); tried again on the next run", entry, subject, exc)
        return []
    return list(listed or [])
