from __future__ import annotations

import json

from ecr_transfer.blobsched import BlobSchedule, blob_sets
from ecr_transfer.model import WorkItem


def _item(name: str) -> WorkItem:
    return WorkItem(f"src/{name}:v1", f"dst/{name}:v1", "copy", "not at destination")


def test_images_sharing_a_blob_never_copy_it_at_the_same_time() -> None:
    a, b, c, d = (_item(n) for n in "abcd")
    blobs = {
        a.source: {"base1": 10, "common": 1, "a": 5},
        b.source: {"base2": 10, "common": 1, "b": 5},
        c.source: {"base1": 10, "c": 5},
        d.source: {"d": 5},
    }
    schedule = BlobSchedule([a, b, c, d], blobs)
    # c is the smallest image bringing a shared blob (base1); b brings common; a needs both.
    assert schedule.take() is c
    assert schedule.take() is b
    assert schedule.take() is d
    assert schedule.take() is None
    schedule.finished(b, landed=True)
    assert schedule.take() is None  # base1 is still on its way (c)
    schedule.finished(c, landed=True)
    # base1 and common are at the destination now: a only skips or mounts them.
    assert schedule.take() is a
    assert schedule.pending == 0


def test_a_failed_copy_releases_its_blobs_without_marking_them_landed() -> None:
    a, b, c = (_item(n) for n in "abc")
    blobs = {s.source: {"base": 10} for s in (a, b, c)}
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


def test_the_smallest_image_bringing_new_shared_blobs_goes_first() -> None:
    big, small, follower, other = (_item(n) for n in ("big", "small", "follower", "other"))
    blobs = {
        big.source: {"common": 1, "base1": 50, "arm": 50, "big": 30},
        small.source: {"common": 1, "base1": 50, "small": 5},
        follower.source: {"base1": 50, "f": 500},
        other.source: {"o": 5},
    }
    schedule = BlobSchedule([big, small, follower, other], blobs)
    assert schedule.take() is small  # leads (common, base1) and is smaller than big
    assert schedule.take() is other  # shares nothing: free to run alongside
    assert schedule.take() is None
    schedule.finished(small, landed=True)
    assert schedule.take() is big  # nothing left to lead: the original order
    assert schedule.take() is follower


class _FakeClient:
    def __init__(self, manifests: dict[str, bytes], blobs: set[tuple[str, str]]) -> None:
        self.manifests, self.blobs, self.heads = manifests, blobs, 0

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        return self.manifests.get(f"{repository}:{reference}")

    def has_blob(self, repository: str, digest: str) -> bool:
        self.heads += 1
        return (repository, digest) in self.blobs


class _FakeClients:
    def __init__(self, client: _FakeClient) -> None:
        self.client = client

    def get(self, registry: str) -> _FakeClient:
        return self.client


def test_blob_sets_leave_out_shared_blobs_already_in_the_target_repository() -> None:
    def manifest(*layers: str) -> bytes:
        doc = {
            "config": {"digest": f"cfg-{layers[-1]}", "size": 1},
            "layers": [{"digest": d, "size": 10} for d in layers],
        }
        return json.dumps(doc).encode()

    client = _FakeClient(
        {"src/a:v2": manifest("base", "a2"), "src/b:v2": manifest("base", "b2")},
        {("src/a", "base")},  # a's repository at the destination has the base already (the old tag)
    )
    items = [
        WorkItem("reg.example/src/a:v2", "dst.example/src/a:v2", "copy", "changed"),
        WorkItem("reg.example/src/b:v2", "dst.example/src/b:v2", "copy", "changed"),
    ]
    found = blob_sets(_FakeClients(client), items)  # type: ignore[arg-type]
    assert set(found[items[0].source]) == {"a2", "cfg-a2"}
    assert set(found[items[1].source]) == {"base", "b2", "cfg-b2"}
    assert client.heads == 2  # only the shared blob, once per image
