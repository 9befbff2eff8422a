from __future__ import annotations

from ecr_transfer.blobsched import BlobSchedule
from ecr_transfer.model import WorkItem


def _item(name: str) -> WorkItem:
    return WorkItem(f"src/{name}:v1", f"dst/{name}:v1", "copy", "not at destination")


def test_images_sharing_a_blob_never_copy_it_at_the_same_time() -> None:
    a, b, c, d = (_item(n) for n in "abcd")
    blobs = {
        a.source: frozenset({"base1", "common", "a"}),
        b.source: frozenset({"base2", "common", "b"}),
        c.source: frozenset({"base1", "c"}),
        d.source: frozenset({"d"}),
    }
    schedule = BlobSchedule([a, b, c, d], blobs)
    # a claims base1 and common: b (common) and c (base1) wait, d shares nothing.
    assert schedule.take() is a
    assert schedule.take() is d
    assert schedule.take() is None
    schedule.finished(a, landed=True)
    # base1 and common are at the destination now: b and c only skip or mount them.
    assert schedule.take() is b
    assert schedule.take() is c
    assert schedule.pending == 0


def test_a_failed_copy_releases_its_blobs_without_marking_them_landed() -> None:
    a, b, c = (_item(n) for n in "abc")
    blobs = {s.source: frozenset({"base"}) for s in (a, b, c)}
    schedule = BlobSchedule([a, b, c], blobs)
    assert schedule.take() is a
    assert schedule.take() is None
    schedule.finished(a, landed=False)
    # Still not uploaded: the next one claims it, the third keeps waiting.
    assert schedule.take() is b
    assert schedule.take() is None
    schedule.finished(b, landed=True)
    assert schedule.take() is c


def test_unknown_blobs_mean_no_constraint_and_rest_returns_what_never_started() -> None:
    items = [_item(n) for n in "abc"]
    schedule = BlobSchedule(items, {})
    assert schedule.take() is items[0]
    assert schedule.rest() == items[1:]
    assert schedule.take() is None
