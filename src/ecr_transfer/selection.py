"""The user's selection: the list's entries, expansions through the tag lists, and the tag filters.

A tag written in the list is always transferred; only tags that come from an expansion
(`repo:ALL_TAGS`, `srcList: ALL`) pass the filters. What the filters dropped is kept with its
reason, so `plan` can show it instead of images silently not arriving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ecr_transfer.catalog import SourceCatalog
from ecr_transfer.errors import TransferError
from ecr_transfer.references import ImageRef, parse_image_list
from ecr_transfer.referrers import is_referrer_tag
from ecr_transfer.settings import Settings
from ecr_transfer.tagfilter import FilterStep, TagFilters, apply

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EntryCounts:
    """How many tags one expanded entry listed, and how many were left after each filter."""

    entry: str
    """`host/repo:ALL_TAGS` (for srcList ALL: one per repository)."""
    listed: int
    steps: tuple[FilterStep, ...]


@dataclass(frozen=True, slots=True)
class Dropped:
    source: str
    """The full reference that is not transferred: `host/repo:tag`."""
    reason: str
    """The filter that dropped it and why: `tagSemver: 0.9.0 is outside '>=1.25.0 <2'`."""


@dataclass(frozen=True, slots=True)
class Unlisted:
    """A `repo:ALL_TAGS` entry whose tag list could not be read: that entry's failure, not the run's."""

    entry: ImageRef
    error: str


@dataclass(frozen=True, slots=True)
class Selection:
    images: tuple[ImageRef, ...]
    entries: tuple[EntryCounts, ...] = ()
    """Only when a filter is set."""
    filtered: tuple[Dropped, ...] = ()
    unlisted: tuple[Unlisted, ...] = ()


def _expand(source: SourceCatalog, entries: Sequence[ImageRef]) -> dict[ImageRef, list[str] | TransferError]:
    def tags_of(ref: ImageRef) -> list[str] | TransferError:
        try:
            return sorted(source.tags(ref))
        except TransferError as exc:
            return exc

    if not entries:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(entries))) as pool:
        return dict(zip(entries, pool.map(tags_of, entries), strict=True))


class _Filtering:
    """Collects the filters' verdicts over every expanded entry of one selection."""

    def __init__(self, filters: TagFilters, source: SourceCatalog) -> None:
        self.filters = filters
        self.source = source
        self.entries: list[EntryCounts] = []
        self.dropped: list[Dropped] = []

    def tags(self, entry: ImageRef, listed: Sequence[str]) -> list[str]:
        # `sha256-<hex>.sig` and the like are an image's referrers, not tags a user picks: they
        # travel with the image they refer to (copyReferrers), and never through the filters.
        tags = [t for t in listed if not is_referrer_tag(t)]
        if not self.filters.active:
            return tags
        # Push times matter to tagLatest only; ECR has them from the listing already made.
        pushed = self.source.pushed_at(entry) if self.filters.latest else {}
        result = apply(self.filters, tags, pushed)
        counts = EntryCounts(entry=str(entry), listed=result.listed, steps=result.steps)
        self.entries.append(counts)
        # The cloud path has no plan table: its log says what the filters left of each entry.
        left = ", ".join(f"{s.key} {s.kept}" for s in counts.steps)
        log.info("%s: %d tags listed; %s", counts.entry, counts.listed, left)
        self.dropped.extend(Dropped(source=str(entry.with_tag(t)), reason=r) for t, r in result.dropped)
        return list(result.kept)


def _repositories(images: Sequence[ImageRef]) -> dict[ImageRef, list[str]]:
    """srcList ALL's images grouped by repository, as `repo:ALL_TAGS` entries."""
    groups: dict[ImageRef, list[str]] = {}
    for image in images:
        entry = ImageRef(image.registry, image.repository, image.path, all_tags=True)
        groups.setdefault(entry, []).append(image.tag or "")
    return groups


def select(settings: Settings, source: SourceCatalog) -> Selection:
    """Expand the selection and filter expanded tags; an unlistable entry is kept in `unlisted`."""
    filtering = _Filtering(settings.tag_filters, source)
    result: list[ImageRef] = []
    unlisted: list[Unlisted] = []
    if settings.src_list == "ALL":
        for entry, tags in _repositories(source.all_images()).items():
            result.extend(entry.with_tag(t) for t in filtering.tags(entry, tags))
    else:
        entries = parse_image_list(settings.src_image_list, source.default_registry)
        expanded = _expand(source, [e for e in entries if e.all_tags])
        for entry in entries:
            if not entry.all_tags:
                result.append(entry)
                continue
            listed = expanded[entry]
            if isinstance(listed, TransferError):
                # Like a single tag that cannot be read: this entry fails, the others are copied.
                unlisted.append(Unlisted(entry=entry, error=f"cannot list tags: {listed}"))
            else:
                result.extend(entry.with_tag(t) for t in filtering.tags(entry, listed))
    seen: set[ImageRef] = set()
    images = tuple(r for r in result if not (r in seen or seen.add(r)))  # type: ignore[func-returns-value]
    # A tag also written explicitly is transferred: it is not "filtered", whatever a filter said.
    chosen = {str(r) for r in images}
    filtered = tuple(d for d in filtering.dropped if d.source not in chosen)
    return Selection(images=images, entries=tuple(filtering.entries), filtered=filtered, unlisted=tuple(unlisted))
