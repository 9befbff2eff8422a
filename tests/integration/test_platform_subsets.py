"""`platforms`: a subset of a multi-arch index, on real registries with real skopeo.

The children chosen arrive byte for byte (skopeo, by digest); the index holding just them is
written by the registry client after them; an unchanged source is skipped on the next run
without a single skopeo process or registry write.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from ecr_transfer.cli import main
from ecr_transfer.local.oci import Index, Layer, SampleImages, write_index
from ecr_transfer.local.registry import LocalRegistry

from .conftest import SkopeoRecorder, Transfer

ARCHES = ("amd64", "arm64", "s390x")


@pytest.fixture
def three_platforms(src_registry: LocalRegistry, tmp_path: Path) -> Index:
    """team/multi:v1, an index of linux/amd64, linux/arm64 and linux/s390x sharing one layer."""
    common = Layer.random(32 * 1024, "subset-common")
    index = write_index(
        tmp_path / "layout",
        "multi",
        {("linux", a): [common, Layer.text(f"app/{a}.txt", f"{a}\n"), Layer.random(8 * 1024, a)] for a in ARCHES},
    )
    src_registry.push(tmp_path / "layout", "multi", "team/multi", "v1")
    return index


def test_two_of_three_platforms_under_a_new_index_then_a_no_op_rerun(
    transfer: Transfer, three_platforms: Index, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    index = three_platforms
    cfg = transfer.config(
        f"{transfer.src.host}/team/multi:v1", destPrefix="mirror", platforms=["linux/amd64", "linux/arm64"]
    )
    ledger = str(tmp_path / "l.db")

    code, first = transfer.run(cfg, ledger=ledger)
    assert code == 0 and first["counts"]["copied"] == 1, first

    # The index at the destination: the source's document with only the two descriptors asked for.
    written = transfer.dst.get_manifest("mirror/team/multi", "v1")
    assert written is not None
    digest = "sha256:" + hashlib.sha256(written).hexdigest()
    assert transfer.dst.manifest_digest("mirror/team/multi", "v1") == digest != index.digest
    source_doc = json.loads(transfer.src.get_manifest("team/multi", "v1") or b"")
    expected_doc = {
        **source_doc,
        "manifests": [d for d in source_doc["manifests"] if d["platform"]["architecture"] != "s390x"],
    }
    assert json.loads(written) == expected_doc
    # Children byte for byte; the platform left out is not there at all, nor its own blobs.
    for arch in ("amd64", "arm64"):
        child = index.child(("linux", arch))
        assert transfer.dst.get_manifest("mirror/team/multi", child.digest) == transfer.src.get_manifest(
            "team/multi", child.digest
        )
        assert all(transfer.dst.blob_exists("mirror/team/multi", b) for b in child.blob_digests)
    s390x = index.child(("linux", "s390x"))
    assert transfer.dst.manifest_digest("mirror/team/multi", s390x.digest) is None
    assert not transfer.dst.blob_exists("mirror/team/multi", s390x.layer_digests[-1])
    # Two skopeo copies by digest, and no index copy by skopeo (it cannot write this index).
    assert len(skopeo_recorder.platform_copies()) == 2 and skopeo_recorder.copies() == []

    [item] = first["items"]
    assert (item["source_digest"], item["target_digest"]) == (index.digest, digest)
    row = sqlite3.connect(ledger).execute("SELECT source_digest, target_digest, reason FROM outcomes").fetchall()
    assert row == [
        (index.digest, digest, "not at destination; platforms linux/amd64,linux/arm64 written as a new index")
    ]

    # Nothing changed: skipped from the ledger's pairing, no skopeo, no write at the destination.
    calls = len(skopeo_recorder.calls())
    transfer.dst.reset_requests()
    code, second = transfer.run(cfg, ledger=ledger)
    assert code == 0 and second["counts"] == {"planned": 1, "copied": 0, "skipped": 1, "failed": 0}
    assert second["items"][0]["target_digest"] == digest
    assert len(skopeo_recorder.calls()) == calls
    assert [r for r in transfer.dst.requests() if r.method not in ("GET", "HEAD")] == []
    code, third = transfer.run(cfg, ledger=ledger)
    assert third["counts"]["skipped"] == 1, "a skip keeps the pairing for the run after it"

    # Asking for every platform the index has: the source index itself, byte for byte.
    every = transfer.config(
        f"{transfer.src.host}/team/multi:v1", destPrefix="mirror", platforms=[f"linux/{a}" for a in ARCHES]
    )
    code, fourth = transfer.run(every, ledger=ledger)
    assert code == 0 and fourth["counts"]["copied"] == 1
    assert transfer.dst.manifest_digest("mirror/team/multi", "v1") == index.digest


def test_changed_platforms_copy_again_and_a_missing_platform_fails_once_with_its_cause(
    transfer: Transfer, three_platforms: Index, tmp_path: Path
) -> None:
    ledger = str(tmp_path / "l.db")
    host = transfer.src.host
    assert (
        main(
            [
                "run",
                "--config",
                str(transfer.config(f"{host}/team/multi:v1", platforms="linux/amd64")),
                "--ledger",
                ledger,
            ]
        )
        == 0
    )
    transfer.capsys.readouterr()
    one = transfer.dst.get_manifest("team/multi", "v1") or b""
    assert [d["platform"]["architecture"] for d in json.loads(one)["manifests"]] == ["amd64"]

    # Same source digest, other platforms: the ledger's pairing no longer holds, the index is rewritten.
    cfg = transfer.config(f"{host}/team/multi:v1", platforms="linux/s390x,linux/amd64")
    code, result = transfer.run(cfg, ledger=ledger)
    assert code == 0 and result["counts"]["copied"] == 1
    two = transfer.dst.get_manifest("team/multi", "v1") or b""
    assert [d["platform"]["architecture"] for d in json.loads(two)["manifests"]] == ["amd64", "s390x"]

    absent = transfer.config(f"{host}/team/multi:v1", platforms=["linux/ppc64le", "windows/amd64"])
    code, failed = transfer.run(absent, ledger=ledger)
    assert code == 1
    [item] = failed["items"]
    assert item["status"] == "failed"
    assert item["error"] == (
        f"{host}/team/multi@{three_platforms.digest}: none of the platforms linux/ppc64le, windows/amd64 is in the "
        "index (it has linux/amd64, linux/arm64, linux/s390x)"
    )
    attempts = sqlite3.connect(ledger).execute("SELECT attempts FROM outcomes WHERE status = 'failed'").fetchall()
    assert [int(a) for (a,) in attempts] == [1], "a failure that would repeat on every attempt is not retried"


def test_narrowing_platforms_rewrites_what_was_transferred_whole_once(
    transfer: Transfer, three_platforms: Index, oci_images: SampleImages
) -> None:
    """An index and a one-platform image copied whole; then `platforms: [linux/arm64]`: the index is
    written again as a new index of arm64 alone, the image copied once more (every platform wanted)
    and both recorded so; the next run skips both. The ledger is what tells "copied whole"."""
    src, dst = transfer.src, transfer.dst
    single = src.push(oci_images.layout, "app-a", "team/app", "1.0")
    images = [f"{src.host}/team/multi:v1", f"{src.host}/team/app:1.0"]
    code, whole = transfer.run(transfer.config("\n".join(images)))
    assert code == 0 and whole["counts"]["copied"] == 2, whole
    assert dst.manifest_digest("team/multi", "v1") == three_platforms.digest

    narrowed_cfg = transfer.config("\n".join(images), platforms=["linux/arm64"])
    code, narrowed = transfer.run(narrowed_cfg)
    assert code == 0 and narrowed["counts"] == {"planned": 2, "copied": 2, "skipped": 0, "failed": 0}, narrowed
    written = json.loads(dst.get_manifest("team/multi", "v1") or b"")
    assert [d["digest"] for d in written["manifests"]] == [three_platforms.children[1].digest]
    assert dst.manifest_digest("team/multi", "v1") != three_platforms.digest
    assert dst.manifest_digest("team/app", "1.0") == single
    reasons = {r["source"]: r["reason"] for r in transfer.rows(narrowed["run_id"])}
    assert reasons[images[0]] == (
        "destination has this source digest as copied before platforms linux/arm64 was asked for; "
        "platforms linux/arm64 written as a new index"
    )
    assert reasons[images[1]] == (
        "destination has this source digest as copied before platforms linux/arm64 was asked for; "
        "platforms linux/arm64: every platform wanted, copied as it is"
    )

    code, again = transfer.run(narrowed_cfg)
    assert code == 0 and again["counts"] == {"planned": 2, "copied": 0, "skipped": 2, "failed": 0}, again
    code, still = transfer.run(narrowed_cfg)
    assert code == 0 and still["counts"]["skipped"] == 2, "a skip records what it kept: no copy on later runs"
