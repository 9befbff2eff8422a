"""Multi-arch images end to end: platforms side by side, and one platform on purpose."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ecr_transfer.cli import main
from ecr_transfer.local.oci import Layer, write_index

from .conftest import SkopeoRecorder, Transfer


def test_platforms_of_an_index_are_copied_side_by_side_sharing_blobs_once(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    # Three platforms sharing one layer: each is copied by digest in its own skopeo, the shared
    # layer is uploaded by one of them only, then the index alone keeps its digest.
    common = Layer.random(64 * 1024, "platforms-common")
    index = write_index(
        tmp_path / "layout",
        "multi",
        {("linux", arch): [common, Layer.text(f"app/{arch}.txt", f"{arch}\n")] for arch in ("amd64", "arm64", "s390x")},
    )
    transfer.src.push(tmp_path / "layout", "multi", "team/multi", "v1")
    cfg = transfer.config(f"{transfer.src.host}/team/multi:v1", destPrefix="mirror")

    code, result = transfer.run(cfg)
    assert code == 0 and result["counts"]["copied"] == 1
    assert transfer.dst.manifest_digest("mirror/team/multi", "v1") == index.digest
    for child in index.children:
        assert transfer.dst.manifest_digest("mirror/team/multi", child.digest) == child.digest

    children = {c.digest for c in index.children}
    platform_copies = skopeo_recorder.platform_copies()
    assert {c[-2].rsplit("@", 1)[1] for c in platform_copies} == children
    assert {c[-1] for c in platform_copies} == {f"docker://{transfer.dst.host}/mirror/team/multi@{d}" for d in children}
    assert all("--all" not in c for c in platform_copies)
    [index_copy] = skopeo_recorder.copies()
    assert index_copy[-2:] == [
        f"docker://{transfer.src.host}/team/multi@{index.digest}",
        f"docker://{transfer.dst.host}/mirror/team/multi:v1",
    ]
    assert "--multi-arch" in index_copy and index_copy[index_copy.index("--multi-arch") + 1] == "index-only"
    uploads = [r.uri for r in transfer.dst.requests() if r.method == "PUT" and "/blobs/uploads/" in r.uri]
    assert sum(common.digest.replace(":", "%3A") in uri for uri in uploads) == 1, uploads


def test_one_platform_copy_at_a_time_means_one_skopeo_for_the_whole_index(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ECR_TRANSFER_PLATFORM_COPIES", "1")
    transfer.seed({"tools/multi:v1": "multi"})
    cfg = transfer.config(f"{transfer.src.host}/tools/multi:v1")
    assert main(["run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db")]) == 0
    assert transfer.dst.manifest_digest("tools/multi", "v1") == transfer.images.multi.digest
    assert skopeo_recorder.platform_copies() == []
    [copy] = skopeo_recorder.copies()
    assert "--all" in copy and copy[-2] == f"docker://{transfer.src.host}/tools/multi:v1"


def test_with_include_untagged_false_an_unchanged_index_is_not_copied_again(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    # One platform of an index lands: the destination digest never equals the source's, so the
    # ledger's "this platform came from that index digest" is what makes the next run a no-op.
    digests = transfer.seed({"tools/multi:v1": "multi"})
    cfg = transfer.config(f"{transfer.src.host}/tools/multi:v1", includeUntagged=False)
    ledger = str(tmp_path / "l.db")
    amd64 = transfer.images.multi.child(("linux", "amd64"))

    code, first = transfer.run(cfg, ledger=ledger)
    assert code == 0 and first["counts"]["copied"] == 1
    assert transfer.dst.manifest_digest("tools/multi", "v1") == amd64.digest
    [item] = first["items"]
    assert (item["source_digest"], item["target_digest"]) == (digests["tools/multi:v1"], amd64.digest)

    copies = len(skopeo_recorder.copies())
    code, second = transfer.run(cfg, ledger=ledger)
    assert code == 0 and second["counts"] == {"planned": 1, "copied": 0, "skipped": 1, "failed": 0}
    reason = sqlite3.connect(ledger).execute("SELECT reason FROM latest").fetchone()[0]
    assert reason == "destination has the platform copied from this source digest"
    assert len(skopeo_recorder.copies()) == copies, "an unchanged index is not copied again"

    code, third = transfer.run(cfg, ledger=ledger)
    assert code == 0 and third["counts"]["skipped"] == 1  # the skip itself keeps the pairing

    transfer.seed({"tools/multi:v1": "single"})  # the tag moves at the source
    code, fourth = transfer.run(cfg, ledger=ledger)
    assert code == 0 and fourth["counts"]["copied"] == 1
    assert transfer.dst.manifest_digest("tools/multi", "v1") == transfer.images.single.digest

    code, forced = transfer.run(cfg, "--force", ledger=ledger)
    assert code == 0 and forced["counts"]["copied"] == 1
