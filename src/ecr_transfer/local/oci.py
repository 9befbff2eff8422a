"""OCI image layouts written by Python, so tests and the benchmark need no Docker engine.

Everything is deterministic (fixed tar metadata, gzip mtime 0, sorted entries, canonical
JSON): the same inputs give the same digests, so a test can compute the digest it expects
at a registry before pushing anything. skopeo reads the result as `oci:DIR:TAG`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

Platform = tuple[str, str]
"""(os, architecture), e.g. ("linux", "arm64")."""

_BLOCK = tarfile.BLOCKSIZE
# 1 Jan 2000: a fixed, plausible timestamp (0 upsets some tools that treat it as "unset").
_FIXED_MTIME = 946684800
_FIXED_CREATED = "2000-01-01T00:00:00Z"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact, key-sorted JSON: one byte sequence per document, hence one digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class Layer:
    """A built layer: the gzip'd tar blob plus the digests an image needs to reference it.

    Built once, then reusable in any number of images and layouts (a shared base layer is the
    same object, hence the same blob).
    """

    data: bytes
    """The compressed blob as stored under blobs/sha256/."""
    digest: str
    """sha256 of `data` (what manifests reference)."""
    diff_id: str
    """sha256 of the uncompressed tar (what the config's rootfs.diff_ids lists)."""

    @property
    def size(self) -> int:
        return len(self.data)

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, compresslevel: int = 6) -> Layer:
        """A layer holding `files` (path -> content), parent directories added implicitly."""
        diff = hashlib.sha256()
        # wbits=31 is the gzip container; zlib leaves mtime 0 and no file name, as we want.
        deflate = zlib.compressobj(compresslevel, zlib.DEFLATED, 31)
        out: list[bytes] = []
        for chunk in _tar_chunks(files):
            diff.update(chunk)
            out.append(deflate.compress(chunk))
        out.append(deflate.flush())
        data = b"".join(out)
        return cls(data=data, digest=sha256_digest(data), diff_id="sha256:" + diff.hexdigest())

    @classmethod
    def text(cls, path: str, text: str) -> Layer:
        """A small layer with one text file."""
        return cls.from_files({path: text.encode()})

    @classmethod
    def random(cls, size: int, seed: int | str) -> Layer:
        """`size` bytes of seed-deterministic, incompressible content in one file.

        shake_256 is a fixed standard (unlike `random.randbytes`, whose stream may change between
        Python versions) and runs at C speed: ~0.2 s for 50 MB. The content cannot shrink, so it
        is stored, not deflated: same size, and ~15x faster than compress level 1.
        """
        content = hashlib.shake_256(f"ecr-transfer-layer:{seed}".encode()).digest(size)
        return cls.from_files({f"data/random-{seed}.bin": content}, compresslevel=0)


def _tar_chunks(files: Mapping[str, bytes]) -> Iterator[bytes]:
    """Yield a tar stream's pieces without copying file contents into one big buffer."""
    names = {name.strip("/") for name in files}
    dirs = {str(parent) for name in names for parent in Path(name).parents if str(parent) != "."}
    normalized = {name.strip("/"): content for name, content in files.items()}
    for name in sorted(dirs | names):
        info = tarfile.TarInfo(name)
        info.mtime = _FIXED_MTIME
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if name in dirs and name not in normalized:
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            yield info.tobuf(tarfile.PAX_FORMAT)
            continue
        content = normalized[name]
        info.size = len(content)
        info.mode = 0o644
        yield info.tobuf(tarfile.PAX_FORMAT)
        yield content
        if pad := -len(content) % _BLOCK:
            yield b"\0" * pad
    # Two zero blocks end the archive; tarfile pads to a 20-block record, we keep it minimal.
    yield b"\0" * (2 * _BLOCK)


@dataclass(frozen=True, slots=True)
class Image:
    """A single-platform image written to a layout."""

    tag: str | None
    """Name in the layout's index.json (None for the children of an index)."""
    platform: Platform
    digest: str
    """Manifest digest: what a registry reports as Docker-Content-Digest."""
    manifest_size: int
    config_digest: str
    config_size: int
    layer_digests: tuple[str, ...]
    layer_sizes: tuple[int, ...]

    @property
    def total_size(self) -> int:
        """Bytes of manifest + config + layers: what a full copy transfers."""
        return self.manifest_size + self.config_size + sum(self.layer_sizes)

    @property
    def blob_digests(self) -> tuple[str, ...]:
        """Config and layers: every blob a registry needs for this image."""
        return (self.config_digest, *self.layer_digests)


@dataclass(frozen=True, slots=True)
class Index:
    """A multi-platform image index written to a layout."""

    tag: str
    digest: str
    """Index digest: preserved by `skopeo copy --all`."""
    index_size: int
    children: tuple[Image, ...]

    @property
    def total_size(self) -> int:
        """Bytes of index + every child, counting a blob shared by children once."""
        blobs: dict[str, int] = {}
        for child in self.children:
            blobs[child.config_digest] = child.config_size
            blobs.update(zip(child.layer_digests, child.layer_sizes, strict=True))
        return self.index_size + sum(c.manifest_size for c in self.children) + sum(blobs.values())

    def child(self, platform: Platform) -> Image:
        for image in self.children:
            if image.platform == platform:
                return image
        raise KeyError(platform)


class _Layout:
    """Blob store + index.json of one layout directory.

    Tags are kept in memory and index.json is written by `flush`: a writer adding thousands of
    images writes it once (per image, reading and rewriting it made a 10,000-tag corpus quadratic).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        oci_layout = self.root / "oci-layout"
        if not oci_layout.exists():
            oci_layout.write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
        path = self.root / "index.json"
        index: dict[str, Any] = json.loads(path.read_bytes()) if path.exists() else {}
        self._tags: dict[str, dict[str, Any]] = {
            m["annotations"][REF_NAME]: m for m in index.get("manifests", []) if REF_NAME in m.get("annotations", {})
        }
        self._dirty = False

    def put(self, data: bytes, digest: str | None = None) -> str:
        digest = digest or sha256_digest(data)
        path = self.blobs / digest.removeprefix("sha256:")
        # Content-addressed: an existing file already holds these bytes, so write once.
        if not path.exists():
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(path)
        return digest

    def tag(self, tag: str, media_type: str, digest: str, size: int) -> None:
        self._tags[tag] = {"mediaType": media_type, "digest": digest, "size": size, "annotations": {REF_NAME: tag}}
        self._dirty = True

    def flush(self) -> None:
        if not self._dirty:
            return
        index = {"schemaVersion": 2, "manifests": [self._tags[t] for t in sorted(self._tags)]}
        (self.root / "index.json").write_bytes(canonical_json(index))
        self._dirty = False


def _build_image(
    layout: _Layout,
    tag: str | None,
    layers: Sequence[Layer],
    platform: Platform,
    labels: Mapping[str, str] | None,
) -> Image:
    os_name, arch = platform
    config = {
        "architecture": arch,
        "os": os_name,
        "created": _FIXED_CREATED,
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Labels": dict(labels or {})},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": [{"created": _FIXED_CREATED, "created_by": "ecr_transfer.local.oci"} for _ in layers],
    }
    config_bytes = canonical_json(config)
    config_digest = layout.put(config_bytes)
    for layer in layers:
        layout.put(layer.data, layer.digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": x.digest, "size": x.size} for x in layers],
    }
    manifest_bytes = canonical_json(manifest)
    return Image(
        tag=tag,
        platform=platform,
        digest=layout.put(manifest_bytes),
        manifest_size=len(manifest_bytes),
        config_digest=config_digest,
        config_size=len(config_bytes),
        layer_digests=tuple(x.digest for x in layers),
        layer_sizes=tuple(x.size for x in layers),
    )


class LayoutWriter:
    """Many images into one layout, index.json written once at `close` (or the end of a `with`);
    `write_image` and `write_index` are this for one image."""

    def __init__(self, layout_dir: str | os.PathLike[str]) -> None:
        self._layout = _Layout(layout_dir)

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._layout.flush()

    def image(
        self,
        tag: str,
        layers: Sequence[Layer],
        *,
        platform: Platform = ("linux", "amd64"),
        labels: Mapping[str, str] | None = None,
    ) -> Image:
        """A single-platform OCI image named `tag`."""
        image = _build_image(self._layout, tag, layers, platform, labels)
        self._layout.tag(tag, OCI_MANIFEST, image.digest, image.manifest_size)
        return image

    def index(
        self,
        tag: str,
        per_platform: Mapping[Platform, Sequence[Layer]] | Iterable[tuple[Platform, Sequence[Layer]]],
        *,
        labels: Mapping[str, str] | None = None,
    ) -> Index:
        """A multi-platform OCI image index (children in the given order) named `tag`."""
        items = per_platform.items() if isinstance(per_platform, Mapping) else per_platform
        children = tuple(_build_image(self._layout, None, layers, platform, labels) for platform, layers in items)
        if not children:
            raise ValueError("an image index needs at least one platform")
        index = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": child.digest,
                    "size": child.manifest_size,
                    "platform": {"os": child.platform[0], "architecture": child.platform[1]},
                }
                for child in children
            ],
        }
        index_bytes = canonical_json(index)
        digest = self._layout.put(index_bytes)
        self._layout.tag(tag, OCI_INDEX, digest, len(index_bytes))
        return Index(tag=tag, digest=digest, index_size=len(index_bytes), children=children)


def write_image(
    layout_dir: str | os.PathLike[str],
    tag: str,
    layers: Sequence[Layer],
    *,
    platform: Platform = ("linux", "amd64"),
    labels: Mapping[str, str] | None = None,
) -> Image:
    """Write a single-platform OCI image and name it `tag` in the layout's index.json."""
    with LayoutWriter(layout_dir) as writer:
        return writer.image(tag, layers, platform=platform, labels=labels)


def write_index(
    layout_dir: str | os.PathLike[str],
    tag: str,
    per_platform: Mapping[Platform, Sequence[Layer]] | Iterable[tuple[Platform, Sequence[Layer]]],
    *,
    labels: Mapping[str, str] | None = None,
) -> Index:
    """Write a multi-platform OCI image index (children in the given order) named `tag`."""
    with LayoutWriter(layout_dir) as writer:
        return writer.index(tag, per_platform, labels=labels)


def tagged_digest(layout_dir: str | os.PathLike[str], tag: str) -> str:
    """The digest a layout's index.json names `tag` (what `oci:DIR:TAG` resolves to)."""
    index = json.loads((Path(layout_dir) / "index.json").read_bytes())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get(REF_NAME) == tag:
            return str(entry["digest"])
    raise KeyError(f"{tag!r} is not tagged in {layout_dir}")


def read_blob(layout_dir: str | os.PathLike[str], digest: str) -> bytes:
    return (Path(layout_dir) / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


@dataclass(frozen=True, slots=True)
class SampleImages:
    """A small, fixed set of images in one layout: what tests and the demo push around."""

    layout: Path
    single: Image
    """Tag "single": one platform (linux/amd64), two layers of its own."""
    multi: Index
    """Tag "multi": linux/amd64 + linux/arm64 index, one base and one app layer per platform."""
    app_a: Image
    """Tag "app-a": `base_layer` + its own layer."""
    app_b: Image
    """Tag "app-b": `base_layer` + its own layer (so copying after app-a can skip or mount the base)."""
    base_layer: Layer

    def __getitem__(self, tag: str) -> Image | Index:
        images: dict[str, Image | Index] = {
            "single": self.single,
            "multi": self.multi,
            "app-a": self.app_a,
            "app-b": self.app_b,
        }
        return images[tag]


def write_samples(layout_dir: str | os.PathLike[str]) -> SampleImages:
    """Write the sample set (a few KB, milliseconds) into layout_dir."""
    base = Layer.from_files({"etc/os-release": b"ID=ecr-transfer-test\n", "bin/true": b"#!/bin/sh\n"})
    arch_layers = {
        arch: [Layer.text("etc/arch", f"{arch} base\n"), Layer.text("app/app.txt", f"multi app {arch}\n")]
        for arch in ("amd64", "arm64")
    }
    return SampleImages(
        layout=Path(layout_dir),
        single=write_image(
            layout_dir,
            "single",
            [Layer.text("etc/single", "single base\n"), Layer.text("app/hello.txt", "hello\n")],
            labels={"org.opencontainers.image.title": "single"},
        ),
        multi=write_index(layout_dir, "multi", {("linux", arch): ls for arch, ls in arch_layers.items()}),
        app_a=write_image(layout_dir, "app-a", [base, Layer.text("app/a.txt", "app a\n")]),
        app_b=write_image(layout_dir, "app-b", [base, Layer.text("app/b.txt", "app b\n")]),
        base_layer=base,
    )


__all__ = [
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "REF_NAME",
    "Image",
    "Index",
    "Layer",
    "LayoutWriter",
    "Platform",
    "SampleImages",
    "canonical_json",
    "read_blob",
    "sha256_digest",
    "tagged_digest",
    "write_image",
    "write_index",
    "write_samples",
]
