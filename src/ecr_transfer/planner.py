"""The incremental plan: copy an image only when the destination lacks it or differs."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from ecr_transfer import referrers
from ecr_transfer.catalog import DestinationCatalog, DigestResult, SourceCatalog
from ecr_transfer.errors import ConfigError, TransferError
from ecr_transfer.mapping import clashing_targets, target_ref, unlisted_target
from ecr_transfer.model import Outcome, WorkItem
from ecr_transfer.references import ImageRef, entry_lines
from ecr_transfer.selection import Selection, select
from ecr_transfer.settings import Settings
from ecr_transfer.subsets import signature


def selected_images(settings: Settings, source: SourceCatalog) -> list[ImageRef]:
    """The user's selection, with `repo:ALL_TAGS` expanded and the tag filters applied."""
    return list(select(settings, source).images)


def lookup_failed(item: WorkItem) -> bool:
    """Planned to copy without knowing what: the source could not be read, so the copy will fail too."""
    return item.error is not None or (item.action == "copy" and item.source_digest is None)


def _decide(
    src: ImageRef, dst: ImageRef, src_digest: str | None, dst_digest: str | None, force: bool
) -> tuple[str, str]:
    if src_digest is None:
        return "copy", "source digest unknown"
    if dst_digest is None:
        return "copy", "not at destination"
    if dst_digest != src_digest:
        return "copy", f"destination has {dst_digest}"
    if force:
        return "copy", "--force"
    return "skip", "destination has the same digest"


def _platform_in_place(
    settings: Settings,
    previous: Mapping[str, Outcome] | None,
    src: ImageRef,
    dst: ImageRef,
    src_digest: str,
    dst_digest: str | None,
) -> bool:
    if not settings.copies_subset or previous is None or dst_digest is None:
        return False
    last = previous.get(str(src))
    return (
        last is not None
        and last.status in ("copied", "skipped")
        and last.target == str(dst)
        and last.source_digest == src_digest
        and last.target_digest == dst_digest
        # The index written holds the platforms asked for then: a changed `platforms` copies again.
        and (not settings.platforms or signature(settings.platforms) in (last.reason or ""))
    )


def _whole_under_platforms(
    settings: Settings,
    previous: Mapping[str, Outcome] | None,
    src: ImageRef,
    dst: ImageRef,
    src_digest: str,
    reason: str,
) -> tuple[str, str]:
    """The destination has the source's own digest while `platforms` is set: the ledger says why.

    Recorded before this `platforms` list (copied whole, or under another list): copy once more;
    the copier writes the subset, or finds every platform wanted and records that, which the next
    runs read back. An image the ledger does not know (another tool copied it) is left as it is.
    """
    wanted = signature(settings.platforms)
    last = previous.get(str(src)) if previous is not None else None
    if last is None or last.status not in ("copied", "skipped") or last.target != str(dst):
        return "skip", reason
    if last.source_digest != src_digest:
        return "skip", reason
    if wanted in (last.reason or ""):
        return "skip", f"{reason} ({wanted} applied)"
    return "copy", f"destination has this source digest as copied before {wanted} was asked for"


def plan(
    settings: Settings,
    source: SourceCatalog,
    destination: DestinationCatalog,
    *,
    force: bool = False,
    previous: Mapping[str, Outcome] | None = None,
    selection: Selection | None = None,
    left_out: list[referrers.LeftOut] | None = None,
) -> list[WorkItem]:
    """One WorkItem per selected image; HEAD-only (or bulk ECR) lookups on both sides.

    A source lookup that fails becomes a `copy` item carrying the error as its reason, so the
    copier records a failure with that cause instead of the whole plan aborting.

    `previous` (the ledger's latest outcome per source) matters with `includeUntagged: false`
    or `platforms` only: the destination then holds one platform of a source index, or an index
    of some of its platforms, whose digest never equals the source's; the ledger says which
    destination digest came from which source digest (and, for `platforms`, of which platforms).

    `selection` is what `select()` already chose (the CLI shows its filter verdicts beside the plan).
    `left_out`, when given, receives the referrers `referrerTypes` kept out (the plan shows them too).
    """
    selection = selection or select(settings, source)
    sources = list(selection.images)
    targets = _targets(settings, destination, sources)
    clashes = clashing_targets(sources, targets, entry_lines(settings.src_image_list, source.default_registry))
    if clashes:
        raise ConfigError(clashes, source="srcImageList")
    # A digest-pinned source needs no lookup: the pin is the digest.
    unpinned = [s for s in sources if not s.digest]
    # Both sides at once: neither lookup needs the other's answer, and across a WAN the plan
    # takes one side's round trips instead of the sum of both.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan-source") as sides:
        src_future = sides.submit(source.digests, unpinned)
        dst_digests = destination.digests(targets)
        looked_up = dict(zip(unpinned, src_future.result(), strict=True))
    src_digests = [s.digest or looked_up[s] for s in sources]
    items = _items(settings, previous, force, sources, targets, src_digests, dst_digests)
    items += [
        WorkItem(
            source=str(unlisted.entry),
            target=unlisted_target(unlisted.entry, destination.registry, settings.dest_prefix),
            action="copy",
            reason=unlisted.error,
            error=unlisted.error,
        )
        for unlisted in selection.unlisted
    ]
    if settings.copy_referrers:
        items += _referrer_items(settings, source, destination, sources, src_digests, force, left_out)
    return items


def _targets(settings: Settings, destination: DestinationCatalog, sources: list[ImageRef]) -> list[ImageRef]:
    try:
        return [target_ref(s, destination.registry, settings.dest_prefix) for s in sources]
    except ValueError as exc:
        raise ConfigError(str(exc), source="destPrefix") from None


def _referrer_items(
    settings: Settings,
    source: SourceCatalog,
    destination: DestinationCatalog,
    sources: list[ImageRef],
    src_digests: list[DigestResult],
    force: bool,
    left_out: list[referrers.LeftOut] | None,
) -> list[WorkItem]:
    """The selected images' signatures, SBOMs and attestations, each planned like a tag of its own."""
    chosen = {str(s) for s in sources}
    subjects = [(s, d) for s, d in zip(sources, src_digests, strict=True) if isinstance(d, str)]
    # Referrers of an index's children travel for the children copied: every one, those of
    # `platforms`, or linux/amd64's with includeUntagged false (the one platform copied).
    copied: tuple[str, ...] | None = ("linux/amd64",) if not settings.include_untagged else settings.platforms or None
    discovery = referrers.discover(source, subjects, settings.referrer_types, copied)
    # A referrer written in the list is transferred like any tag written there, whatever its type.
    if left_out is not None:
        left_out.extend(x for x in discovery.left_out if x.source not in chosen)
    found = [r for r in discovery.found if str(r.ref) not in chosen]
    if not found:
        return []
    refs = [r.ref for r in found]
    targets = _targets(settings, destination, refs)
    notes = [f"{referrers.REFERRER_REASON}{r.subject}" for r in found]
    digests: list[DigestResult] = [r.digest for r in found]
    return _items(settings, None, force, refs, targets, digests, destination.digests(targets), notes)


def _items(
    settings: Settings,
    previous: Mapping[str, Outcome] | None,
    force: bool,
    sources: list[ImageRef],
    targets: list[ImageRef],
    src_digests: list[DigestResult],
    dst_digests: list[DigestResult],
    notes: list[str] | None = None,
) -> list[WorkItem]:
    items: list[WorkItem] = []
    for n, (src, dst, src_digest, dst_digest) in enumerate(
        zip(sources, targets, src_digests, dst_digests, strict=True)
    ):
        note = f"{notes[n]}: " if notes else ""
        if isinstance(src_digest, TransferError):
            reason = f"{note}source lookup failed: {src_digest}"
            items.append(WorkItem(source=str(src), target=str(dst), action="copy", reason=reason))
            continue
        if src_digest is None:
            reason = f"{note}source lookup failed: not found at the source"
            items.append(WorkItem(source=str(src), target=str(dst), action="copy", reason=reason))
            continue
        dst_value = None if isinstance(dst_digest, TransferError) else dst_digest
        action, reason = _decide(src, dst, src_digest, dst_value, force)
        if action == "copy" and not force and _platform_in_place(settings, previous, src, dst, src_digest, dst_value):
            action, reason = (
                "skip",
                (
                    f"destination has the index of {signature(settings.platforms)} written from this source digest"
                    if settings.platforms
                    else "destination has the platform copied from this source digest"
                ),
            )
        if action == "skip" and settings.platforms and not force:
            action, reason = _whole_under_platforms(settings, previous, src, dst, src_digest, reason)
        if isinstance(dst_digest, TransferError):
            reason = f"destination lookup failed ({dst_digest}); copying to be safe"
        items.append(
            WorkItem(
                source=str(src),
                target=str(dst),
                action=action,  # type: ignore[arg-type]
                reason=note + reason,
                source_digest=src_digest,
                target_digest=dst_value,
            )
        )
    return items
