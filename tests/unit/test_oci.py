"""OCI layouts written by ecr_transfer.local.oci: deterministic, well-formed, deduplicated."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.local.oci import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    REF_NAME,
    Layer,
    LayoutWriter,
    read_blob,
    tagged_digest,
    write_image,
    write_index,
    write_samples,
)


def _json_blob(layout: Path, digest: str) -> Any:
    return json.loads(read_blob(layout, digest))


def _blob_files(layout: Path) -> set[str]:
    return {"sha256:" + p.name for p in (layout / "blobs" / "sha256").iterdir()}


def test_same_inputs_give_same_digests_and_bytes(tmp_path: Path) -> None:
    first = write_samples(tmp_path / "one")
    second = write_samples(tmp_path / "two")
    assert first.single.digest == second.single.digest
    assert first.multi.digest == second.multi.digest
    assert first.app_b == second.app_b
    for digest in _blob_files(first.layout):
        assert read_blob(first.layout, digest) == read_blob(second.layout, digest)
    assert (first.layout / "index.json").read_bytes() == (second.layout / "index.json").read_bytes()


def test_different_content_gives_different_digests() -> None:
    assert Layer.text("a", "x").digest != Layer.text("a", "y").digest
    assert Layer.text("a", "x").digest != Layer.text("b", "x").digest
    assert Layer.random(4096, 1).digest != Layer.random(4096, 2).digest


def test_every_blob_is_stored_under_its_own_sha256(tmp_path: Path) -> None:
    write_samples(tmp_path)
    for digest in _blob_files(tmp_path):
        assert "sha256:" + hashlib.sha256(read_blob(tmp_path, digest)).hexdigest() == digest


def test_layer_is_a_reproducible_gzip_tar() -> None:
    layer = Layer.from_files({"b/file.txt": b"bee", "a.txt": b"ay"})
    assert layer.data[:2] == b"\x1f\x8b"
    assert layer.data[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    with tarfile.open(fileobj=io.BytesIO(layer.data), mode="r:gz") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["a.txt", "b", "b/file.txt"]
        assert members[1].isdir()
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
        assert len({m.mtime for m in members}) == 1
        extracted = tar.extractfile("b/file.txt")
        assert extracted is not None and extracted.read() == b"bee"


def test_diff_id_is_the_sha256_of_the_uncompressed_tar(tmp_path: Path) -> None:
    layers = [Layer.text("etc/x", "x\n"), Layer.random(10_000, "diff")]
    image = write_image(tmp_path, "t", layers)
    config = _json_blob(tmp_path, image.config_digest)
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(x.data)).hexdigest() for x in layers],
    }
    assert [x.diff_id for x in layers] == config["rootfs"]["diff_ids"]


def test_random_layer_is_deterministic_incompressible_and_sized() -> None:
    layer = Layer.random(256 * 1024, seed=42)
    assert layer == Layer.random(256 * 1024, seed=42)
    with tarfile.open(fileobj=io.BytesIO(layer.data), mode="r:gz") as tar:
        (member,) = [m for m in tar.getmembers() if m.isfile()]
        assert member.size == 256 * 1024
        extracted = tar.extractfile(member)
        assert extracted is not None
        content = extracted.read()
    assert len(gzip.compress(content)) > len(content), "content must not compress"
    assert layer.size > 256 * 1024


def test_image_manifest_and_config(tmp_path: Path) -> None:
    layers = [Layer.text("a", "1"), Layer.text("b", "2")]
    image = write_image(tmp_path, "v1", layers, platform=("linux", "arm64"), labels={"k": "v"})
    manifest = _json_blob(tmp_path, image.digest)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"] == {"mediaType": OCI_CONFIG, "digest": image.config_digest, "size": image.config_size}
    assert manifest["layers"] == [{"mediaType": OCI_LAYER_GZIP, "digest": x.digest, "size": x.size} for x in layers]
    config = _json_blob(tmp_path, image.config_digest)
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert config["config"]["Labels"] == {"k": "v"}
    assert image.layer_digests == tuple(x.digest for x in layers)
    assert image.manifest_size == len(read_blob(tmp_path, image.digest))
    assert image.total_size == sum(len(read_blob(tmp_path, d)) for d in (image.digest, *image.blob_digests))
    assert tagged_digest(tmp_path, "v1") == image.digest


def test_an_index_lists_each_platform_and_shares_common_layers(tmp_path: Path) -> None:
    base = Layer.text("base", "shared")
    index = write_index(
        tmp_path,
        "multi",
        {("linux", "amd64"): [base, Layer.text("x", "amd")], ("linux", "arm64"): [base, Layer.text("x", "arm")]},
    )
    layout_index = json.loads((tmp_path / "index.json").read_bytes())
    assert layout_index["schemaVersion"] == 2
    assert layout_index["manifests"] == [
        {"mediaType": OCI_INDEX, "digest": index.digest, "size": index.index_size, "annotations": {REF_NAME: "multi"}}
    ]
    doc = _json_blob(tmp_path, index.digest)
    assert doc["mediaType"] == OCI_INDEX
    assert [(m["platform"]["os"], m["platform"]["architecture"]) for m in doc["manifests"]] == [
        ("linux", "amd64"),
        ("linux", "arm64"),
    ]
    assert [m["digest"] for m in doc["manifests"]] == [c.digest for c in index.children]
    assert {m["mediaType"] for m in doc["manifests"]} == {OCI_MANIFEST}
    for child, entry in zip(index.children, doc["manifests"], strict=True):
        assert entry["size"] == child.manifest_size
        config = _json_blob(tmp_path, child.config_digest)
        assert (config["os"], config["architecture"]) == child.platform
    assert index.child(("linux", "arm64")) is index.children[1]
    assert index.children[0].tag is None
    # The shared base layer is counted once.
    stored = {d for c in index.children for d in (c.digest, *c.blob_digests)} | {index.digest}
    assert index.total_size == sum(len(read_blob(tmp_path, d)) for d in stored)


def test_index_needs_a_platform(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_index(tmp_path, "empty", {})


def test_shared_blobs_are_written_once(tmp_path: Path) -> None:
    samples = write_samples(tmp_path)
    assert samples.app_a.layer_digests[0] == samples.app_b.layer_digests[0] == samples.base_layer.digest
    referenced = {samples.multi.digest}
    for image in (samples.single, samples.app_a, samples.app_b, *samples.multi.children):
        referenced |= {image.digest, *image.blob_digests}
    assert _blob_files(tmp_path) == referenced
    base_path = tmp_path / "blobs" / "sha256" / samples.base_layer.digest.removeprefix("sha256:")
    before = base_path.stat().st_mtime_ns
    write_image(tmp_path, "app-c", [samples.base_layer, Layer.text("c", "c")])
    assert base_path.stat().st_mtime_ns == before, "an existing blob must not be rewritten"


def test_retagging_replaces_the_index_entry(tmp_path: Path) -> None:
    first = write_image(tmp_path, "latest", [Layer.text("v", "1")])
    second = write_image(tmp_path, "latest", [Layer.text("v", "2")])
    write_image(tmp_path, "other", [Layer.text("v", "1")])
    entries = json.loads((tmp_path / "index.json").read_bytes())["manifests"]
    assert [(e["annotations"][REF_NAME], e["digest"]) for e in entries] == [
        ("latest", second.digest),
        ("other", first.digest),
    ]
    assert json.loads((tmp_path / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    with pytest.raises(KeyError):
        tagged_digest(tmp_path, "missing")


def test_a_layout_writer_gives_the_layout_that_image_by_image_writes_give(tmp_path: Path) -> None:
    layers = [[Layer.text("v", str(k))] for k in range(5)]
    for k, ls in enumerate(layers):
        write_image(tmp_path / "one-by-one", f"t{k}", ls)
    write_index(tmp_path / "one-by-one", "multi", {("linux", "amd64"): layers[0], ("linux", "arm64"): layers[1]})
    with LayoutWriter(tmp_path / "writer") as writer:
        # Out of order and retagged: index.json is sorted by tag, the last image of a tag wins.
        writer.image("t4", layers[0])
        for k, ls in enumerate(layers):
            writer.image(f"t{k}", ls)
        assert not (tmp_path / "writer" / "index.json").exists(), "index.json is written once, at the end"
        writer.index("multi", {("linux", "amd64"): layers[0], ("linux", "arm64"): layers[1]})
    for name in ("index.json", "oci-layout"):
        assert (tmp_path / "writer" / name).read_bytes() == (tmp_path / "one-by-one" / name).read_bytes()
    assert _blob_files(tmp_path / "writer") == _blob_files(tmp_path / "one-by-one")


def test_a_layout_writer_keeps_the_tags_already_in_the_layout(tmp_path: Path) -> None:
    old = write_image(tmp_path, "old", [Layer.text("v", "old")])
    with LayoutWriter(tmp_path) as writer:
        new = writer.image("new", [Layer.text("v", "new")])
    assert tagged_digest(tmp_path, "old") == old.digest
    assert tagged_digest(tmp_path, "new") == new.digest
