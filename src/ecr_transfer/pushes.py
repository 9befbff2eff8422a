"""Pushed images: what an ECR push event names, and the part of the selection it touches.

A push starts work for the pushed image only, and only when the selection would transfer it in
a full run: an explicit `repo:tag` entry, or a tag of an expanded entry (`repo:ALL_TAGS`,
`srcList: ALL`) that passes the tag filters. The filters are applied to the repository's whole
tag list, as in a full run, so `tagLatest` keeps its meaning ("among the newest N"), not "the
newest of one".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ecr_transfer.catalog import SourceCatalog
from ecr_transfer.errors import ConfigError
from ecr_transfer.model import WorkItem
from ecr_transfer.references import ImageRef, parse_image_list, parse_reference
from ecr_transfer.selection import Selection, select
from ecr_transfer.settings import Settings

PUSH_TRIGGER = "push"
MAX_PUSHED_PER_RUN = 500
"""Pushed images one execution carries (~150 bytes each: far inside the 256 KB payload limit)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PushedImage:
    repository: str
    tag: str
    digest: str
    pushed_at: str
    """The event's time (ISO 8601, UTC): push-to-landed latency is measured from it."""

    def as_input(self) -> dict[str, str]:
        return {"repository": self.repository, "tag": self.tag, "digest": self.digest, "pushed_at": self.pushed_at}


def from_execution_input(execution_input: Mapping[str, Any]) -> list[PushedImage] | None:
    """The pushed images of a push-triggered execution; None for a full run."""
    if execution_input.get("trigger") != PUSH_TRIGGER:
        return None
    pushed = execution_input.get("pushed")
    if not isinstance(pushed, list) or not pushed:
        raise ConfigError("a push-triggered run names no pushed images (input.pushed)", source="input")
    try:
        return [
            PushedImage(
                repository=str(p["repository"]),
                tag=str(p["tag"]),
                digest=str(p["digest"]),
                pushed_at=str(p["pushed_at"]),
            )
            for p in pushed
        ]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"input.pushed: each item needs repository, tag, digest, pushed_at ({exc})") from None


def latest_per_tag(pushes: Iterable[PushedImage]) -> list[PushedImage]:
    """A burst can push one tag several times: only its last push matters."""
    latest: dict[tuple[str, str], PushedImage] = {}
    for push in sorted(pushes, key=lambda p: p.pushed_at):
        latest[(push.repository, push.tag)] = push
    return sorted(latest.values(), key=lambda p: (p.repository, p.tag))


def select_pushed(settings: Settings, source: SourceCatalog, pushes: Sequence[PushedImage]) -> Selection:
    """The selection of a full run, narrowed to the pushed repositories, then to the pushed tags.

    `srcList: ALL` becomes one `repo:ALL_TAGS` entry per pushed repository (what ALL means for one
    repository); a selected list keeps only its entries for pushed repositories. So a push to one
    repository lists that repository's tags, not the whole registry's.
    """
    registry = source.default_registry
    repositories = {p.repository for p in pushes}
    if settings.src_list == "ALL":
        entries = [ImageRef(registry or "", repo, repo, all_tags=True) for repo in sorted(repositories)]
    else:
        entries = [
            e
            for e in parse_image_list(settings.src_image_list, registry)
            if e.registry == registry and e.repository in repositories
        ]
    if not entries:
        return Selection(images=())
    narrowed = replace(settings, src_list="SELECTED", src_image_list="\n".join(str(e) for e in entries))
    full = select(narrowed, source)
    wanted = {(p.repository, p.tag) for p in pushes}
    images = tuple(i for i in full.images if (i.repository, i.tag) in wanted)
    return Selection(images=images, entries=full.entries, filtered=full.filtered)


def stamped(items: Iterable[WorkItem], pushes: Sequence[PushedImage]) -> list[WorkItem]:
    """The items, each one a push asked for carrying that push's time (WorkItem.pushed_at).

    It travels with the item through the work list to the copier, which measures the
    push-to-landed latency from it (ecr_transfer.metrics.PUSH_TO_LANDED).
    """
    when = {(p.repository, p.tag): p.pushed_at for p in latest_per_tag(pushes)}
    found = []
    for item in items:
        ref = parse_reference(item.source)
        pushed_at = when.get((ref.repository, ref.tag or ""))
        found.append(replace(item, pushed_at=pushed_at) if pushed_at else item)
    return found
