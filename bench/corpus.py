"""The benchmark corpus: Python-written OCI layouts (ecr_transfer.local.oci), pushed by raw HTTP.

- cold: `cold_images` repositories of one tag each, sharing `cold_bases` base layers, every
  fifth image a two-platform index; sizes scale so unique bytes total about `cold_mb`.
- warm: `warm_tags` tags, half of them in one large-tag-count repository and the rest spread
  over `warm_repos` repositories; small layers shared per group, every tenth tag an index.
- changed: `changed` of the warm tags rebuilt with a new `changed_kb` layer (the small change).

Layouts are written once per parameter set and kept in the work directory; pushing is a
bare monolithic upload per blob plus manifest PUTs, far faster than a skopeo process per tag.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import rawhttp
from ecr_transfer.local.oci import OCI_INDEX, Layer, LayoutWriter, read_blob

AMD64 = ("linux", "amd64")
ARM64 = ("linux", "arm64")
MB = 1_000_000


@dataclass(frozen=True, slots=True)
class Sizes:
    cold_images: int = 20
    cold_mb: int = 1000
    cold_bases: int = 4
    warm_tags: int = 1000
    warm_repos: int = 25
    changed: int = 10
    changed_kb: int = 2000


@dataclass(slots=True)
class Corpus:
    """One scenario's images: where the layout is and which repo:tag each layout tag becomes."""

    layout: Path
    tags: dict[str, str] = field(default_factory=dict)
    """layout tag -> `repo:tag` at the registry."""
    digests: dict[str, str] = field(default_factory=dict)
    """`repo:tag` -> manifest (or index) digest."""
    unique_bytes: int = 0

    @property
    def refs(self) -> list[str]:
        return list(self.tags.values())

    def repositories(self) -> dict[str, list[str]]:
        repos: dict[str, list[str]] = {}
        for ref in self.refs:
            repo, _, tag = ref.rpartition(":")
            repos.setdefault(repo, []).append(tag)
        return repos


def _write(corpus: Corpus, layout_tag: str, ref: str, image: object) -> None:
    corpus.tags[layout_tag] = ref
    corpus.digests[ref] = image.digest  # type: ignore[attr-defined]


def build_cold(workdir: Path, sizes: Sizes) -> Corpus:
    """Unique bytes: bases (one per group plus an arm64 one) + an app layer per platform image."""
    n, groups = sizes.cold_images, max(1, sizes.cold_bases)
    multi = [k for k in range(n) if k % 5 == 0]
    # A base layer weighs 3 units, an app layer 2: bases are shared, apps are not.
    units = 3 * (groups + (1 if multi else 0)) + 2 * (n + len(multi))
    unit = max(1, sizes.cold_mb * MB // units)
    corpus = Corpus(workdir / f"cold-{n}x{sizes.cold_mb}mb-{groups}")
    marker = corpus.layout / "corpus.json"
    if marker.exists():
        return _finish(corpus, marker)
    common = Layer.text("etc/ssl/certs/bench.pem", "shared by every image\n")
    bases = [Layer.random(3 * unit, f"cold-base-{g}") for g in range(groups)]
    arm_base = Layer.random(3 * unit, "cold-base-arm64")
    with LayoutWriter(corpus.layout) as writer:
        for k in range(n):
            ref = f"cold/app-{k:02d}:v1"
            app = Layer.random(2 * unit, f"cold-app-{k}")
            amd = [bases[k % groups], common, app]
            if k in multi:
                arm = [arm_base, common, Layer.random(2 * unit, f"cold-app-{k}-arm64")]
                image: object = writer.index(f"app-{k:02d}", [(AMD64, amd), (ARM64, arm)])
            else:
                image = writer.image(f"app-{k:02d}", amd)
            _write(corpus, f"app-{k:02d}", ref, image)
    return _finish(corpus, marker)


def _warm_refs(sizes: Sizes) -> Iterator[tuple[str, str, int]]:
    """(layout tag, repo:tag, group) for every warm tag: half in one big repository."""
    big = sizes.warm_tags // 2
    for i in range(big):
        yield f"big-{i}", f"warm/big:1.{i}", 0
    rest = sizes.warm_tags - big
    repos = max(1, min(sizes.warm_repos, rest))
    for i in range(rest):
        repo = i % repos
        yield f"r{repo}-{i}", f"warm/svc-{repo:02d}:1.{i // repos}", 1 + repo % 3


def _warm_image(writer: LayoutWriter, layout_tag: str, group: int, bases: list[Layer], salt: str) -> object:
    app = Layer.text(f"app/{layout_tag}.txt", f"{layout_tag} {salt}\n")
    layers = [bases[group], bases[-1], app]
    if layout_tag.endswith("0") and not layout_tag.endswith("00"):
        arm = [bases[group], bases[-1], Layer.text(f"app/{layout_tag}.arm64.txt", f"{layout_tag} arm64 {salt}\n")]
        return writer.index(layout_tag, [(AMD64, layers), (ARM64, arm)])
    return writer.image(layout_tag, layers)


def _warm_bases() -> list[Layer]:
    # Four small group bases plus one layer every image carries: a no-op never moves bytes,
    # but the blob count per image (config + 3 layers) is what a syncer HEADs.
    return [Layer.random(256_000, f"warm-base-{g}") for g in range(4)] + [Layer.text("etc/os-release", "bench\n")]


def build_warm(workdir: Path, sizes: Sizes) -> Corpus:
    corpus = Corpus(workdir / f"warm-{sizes.warm_tags}-{sizes.warm_repos}")
    marker = corpus.layout / "corpus.json"
    if marker.exists():
        return _finish(corpus, marker)
    bases = _warm_bases()
    with LayoutWriter(corpus.layout) as writer:
        for layout_tag, ref, group in _warm_refs(sizes):
            _write(corpus, layout_tag, ref, _warm_image(writer, layout_tag, group, bases, "v1"))
    return _finish(corpus, marker)


def build_changed(workdir: Path, sizes: Sizes) -> Corpus:
    """The `changed` tags of the warm corpus, rebuilt with a new layer of `changed_kb`."""
    corpus = Corpus(workdir / f"changed-{sizes.warm_tags}-{sizes.warm_repos}-{sizes.changed}x{sizes.changed_kb}kb")
    marker = corpus.layout / "corpus.json"
    if marker.exists():
        return _finish(corpus, marker)
    refs = list(_warm_refs(sizes))
    step = max(1, len(refs) // max(1, sizes.changed))
    bases = _warm_bases()
    # Spread over the big repository and several small ones (a plain stride would hit one repo).
    picked = sorted({(k * step + 7 * k) % len(refs) for k in range(min(sizes.changed, len(refs)))})
    with LayoutWriter(corpus.layout) as writer:
        for layout_tag, ref, group in (refs[i] for i in picked):
            extra = Layer.random(sizes.changed_kb * 1000, f"changed-{layout_tag}")
            image = writer.image(layout_tag, [bases[group], bases[-1], extra])
            _write(corpus, layout_tag, ref, image)
    return _finish(corpus, marker)


def _finish(corpus: Corpus, marker: Path) -> Corpus:
    if marker.exists():
        saved = json.loads(marker.read_text())
        corpus.tags, corpus.digests, corpus.unique_bytes = saved["tags"], saved["digests"], saved["unique_bytes"]
        return corpus
    blobs = corpus.layout / "blobs" / "sha256"
    corpus.unique_bytes = sum(p.stat().st_size for p in blobs.iterdir())
    marker.write_text(json.dumps({"tags": corpus.tags, "digests": corpus.digests, "unique_bytes": corpus.unique_bytes}))
    return corpus


# -- pushing a layout tag to a registry, without skopeo ----------------------------------------


class _Pusher:
    """Pushes layout tags; each blob is uploaded once per registry and mounted once per repository.

    Once per repository matters: distribution's filesystem driver rewrites a link file in place,
    so a second mount racing a manifest PUT that reads the link makes that PUT fail.
    """

    def __init__(self, pool: rawhttp.Pool, layout: Path) -> None:
        self.pool, self.layout = pool, layout
        self.linked: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.origin: dict[str, asyncio.Future[str]] = {}

    async def blob(self, repo: str, digest: str) -> None:
        if (mine := self.linked.get((repo, digest))) is not None:
            return await mine
        loop = asyncio.get_running_loop()
        mine = self.linked[(repo, digest)] = loop.create_future()
        origin = self.origin.get(digest)
        if origin is None:
            origin = self.origin[digest] = loop.create_future()
            if not await rawhttp.blob_exists(self.pool, repo, digest):
                await rawhttp.put_blob(self.pool, repo, read_blob(self.layout, digest), digest)
            origin.set_result(repo)
        else:
            source = await origin
            if not await rawhttp.mount_blob(self.pool, repo, digest, source):
                await rawhttp.put_blob(self.pool, repo, read_blob(self.layout, digest), digest)
        mine.set_result(None)

    async def manifest(self, repo: str, ref: str, media_type: str, digest: str) -> None:
        body = read_blob(self.layout, digest)
        doc = json.loads(body)
        if media_type == OCI_INDEX:
            for child in doc["manifests"]:
                await self.manifest(repo, child["digest"], child["mediaType"], child["digest"])
        else:
            for blob in [doc["config"], *doc["layers"]]:
                await self.blob(repo, blob["digest"])
        await rawhttp.put_manifest(self.pool, repo, ref, media_type, body)


async def _push_all(address: str, corpus: Corpus, concurrency: int) -> None:
    pool = rawhttp.Pool(address, concurrency)
    pusher = _Pusher(pool, corpus.layout)
    index = json.loads((corpus.layout / "index.json").read_bytes())
    descriptors = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}

    async def push(layout_tag: str) -> None:
        repo, _, tag = corpus.tags[layout_tag].rpartition(":")
        desc = descriptors[layout_tag]
        await pusher.manifest(repo, tag, str(desc["mediaType"]), str(desc["digest"]))

    try:
        await rawhttp.bounded(list(corpus.tags), concurrency, push)
    finally:
        pool.close()


def push(address: str, corpus: Corpus, *, concurrency: int = 8) -> None:
    """Push every tag of `corpus` to the registry at `address` (host:port)."""
    asyncio.run(_push_all(address, corpus, concurrency))
