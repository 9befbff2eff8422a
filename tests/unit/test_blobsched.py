from __future__ import annotations

import json

from ecr_transfer.blobsched import BlobSchedule, LandingWatch, blob_sets
from ecr_transfer.model import WorkItem


def _item(name: str) -> WorkItem:
    return WorkItem(source=f"src/{name}:v1", target=f"dst/{name}:v1", action="copy", reason="not at destination")


def test_images_sharing_a_blob_never_copy_it_at_the_same_time() -> None:
    a, b, c, d = (_item(n) for n in "abcd")
    blobs = {
        a.source: {"base1": 10, "common": 1, "a": 5},
        b.source: {"base2": 10, "common": 1, "b": 5},
        c.source: {"base1": 10, "c": 5},
        d.source: {"d": 5},
    }
    schedule = BlobSchedule([a, b, c, d], blobs)
    # a brings both shared blobs (common, base1), which b and c wait for: it unlocks the most.
    assert schedule.take() is a
    assert schedule.take() is d  # shares nothing: free to run alongside
    assert schedule.take() is None  # b needs common, c needs base1: both on their way (a)
    schedule.finished(a, landed=True)
    # base1 and common are at the destination now: b and c only skip or mount them.
    assert schedule.take() is b
    assert schedule.take() is c
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


def test_the_image_unlocking_the_most_waiting_bytes_goes_first_then_the_largest() -> None:
    multi, single, small, follower, other = (_item(n) for n in ("multi", "single", "small", "follower", "other"))
    blobs = {
        # base-a is needed by two big images, base-b by a small one: base-a's leader goes first.
        single.source: {"base-b": 50, "single": 5},
        small.source: {"base-b": 50, "small": 1},
        multi.source: {"base-a": 50, "multi": 300},
        follower.source: {"base-a": 50, "f": 500},
        other.source: {"o": 5},
    }
    schedule = BlobSchedule([single, small, multi, follower, other], blobs)
    assert schedule.take() is follower  # leads base-a (which multi waits for) and is the larger of the two
    assert schedule.take() is single  # leads base-b; larger than small
    assert schedule.take() is other  # shares nothing
    assert schedule.take() is None
    schedule.finished(follower, landed=True)
    assert schedule.take() is multi


def test_a_blob_that_lands_early_frees_the_images_waiting_for_it() -> None:
    a, b, c = (_item(n) for n in "abc")
    blobs = {a.source: {"common": 1, "base": 10, "a": 5}, b.source: {"common": 1, "b": 5}, c.source: {"base": 10}}
    schedule = BlobSchedule([a, b, c], blobs)
    assert schedule.take() is a
    assert schedule.take() is None
    assert schedule.awaited() == {"common": a, "base": a}
    schedule.arrived({"common"})  # a is still copying its other layers
    assert schedule.take() is b
    assert schedule.awaited() == {"base": a}
    schedule.finished(a, landed=True)
    assert schedule.take() is c


def test_a_platform_bringing_a_blob_the_rest_of_the_run_waits_for_goes_first() -> None:
    amd64, arm64 = _item("amd64"), _item("arm64")
    blobs = {amd64.source: {"common": 1, "base-amd64": 10}, arm64.source: {"common": 1, "base-arm64": 10}}
    # Within the index both look alike; the run's other images wait for base-arm64 much more.
    demand = {"common": 1000, "base-amd64": 100, "base-arm64": 400}
    schedule = BlobSchedule([amd64, arm64], blobs, demand)
    assert schedule.take() is arm64
    assert schedule.take() is None  # common is on its way


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_landing_watch_looks_for_awaited_blobs_at_the_uploaders_destination() -> None:
    a, b = _item("a"), _item("b")
    schedule = BlobSchedule([a, b], {a.source: {"common": 1, "a": 5}, b.source: {"common": 1, "b": 5}})
    assert schedule.take() is a and schedule.take() is None
    client = _FakeClient({}, set())
    clock = _Clock()
    watch = LandingWatch(_FakeClients(client), schedule, clock)  # type: ignore[arg-type]
    try:
        assert watch.timeout() == LandingWatch.FIRST
        watch.look()  # not yet time: no request
        assert client.heads == 0
        clock.now = 0.1
        watch.look()
        assert client.heads == 1 and schedule.take() is None  # not there yet
        timeout = watch.timeout()
        assert timeout is not None and timeout > LandingWatch.FIRST  # looks less often while nothing arrives
        client.blobs.add(("dst/a", "common"))  # a's upload of the shared layer completed
        clock.now += timeout
        watch.look()
        assert client.heads == 2
        assert schedule.take() is b
        assert watch.timeout() is None  # nothing awaited any more: no more requests
    finally:
        watch.close()


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
        WorkItem(source="reg.example/src/a:v2", target="dst.example/src/a:v2", action="copy", reason="changed"),
        WorkItem(source="reg.example/src/b:v2", target="dst.example/src/b:v2", action="copy", reason="changed"),
    ]
    found = blob_sets(_FakeClients(client), items)  # type: ignore[arg-type]
    assert set(found[items[0].source]) == {"a2", "cfg-a2"}
    assert set(found[items[1].source]) == {"base", "b2", "cfg-b2"}
    assert client.heads == 2  # only the shared blob, once per image
