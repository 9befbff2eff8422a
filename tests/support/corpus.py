"""A few dozen distinct images, pushed once per session and cloned per test by copying storage.

Pushing 30+ images with skopeo takes ~10 s; copying a registry's storage directory takes
milliseconds, so every test still gets its own fresh registry holding the whole corpus.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ecr_transfer.local.oci import Layer, write_image, write_index
from ecr_transfer.local.registry import LocalRegistry


@dataclass(frozen=True, slots=True)
class Corpus:
    storage: Path
    """A stopped registry's storage directory holding every image."""
    digests: dict[str, str]
    """`repo:tag` -> manifest (or index) digest."""

    def clone(self, start: Callable[[Path], LocalRegistry], into: Path) -> LocalRegistry:
        """A fresh registry serving a private copy of the corpus (`start(root_dir)` starts it)."""
        shutil.copytree(self.storage, into)
        return start(into)


def build_corpus(workdir: Path, count: int = 32, multi_every: int = 4, big_layer: int = 192 * 1024) -> Corpus:
    """`count` images over `count // 4` repositories; every `multi_every`-th is a 2-platform index.

    Each image has a shared base layer, its own small layer and its own `big_layer`-byte layer,
    so a connection cut mid-body really cuts a blob in half.
    """
    layout = workdir / "layout"
    base = Layer.from_files({"etc/os-release": b"ID=fault-corpus\n"})
    names: list[tuple[str, str, str]] = []  # (layout tag, repo, tag)
    for i in range(count):
        tag = f"img{i}"
        own = [Layer.text("app/id.txt", f"image {i}\n"), Layer.random(big_layer, f"fault-corpus-{i}")]
        if multi_every and i % multi_every == multi_every - 1:
            write_index(layout, tag, {("linux", arch): [base, *own] for arch in ("amd64", "arm64")})
        else:
            write_image(layout, tag, [base, *own])
        names.append((tag, f"team{i % max(1, count // 4)}/app", f"v{i}"))
    storage = workdir / "storage"
    registry = LocalRegistry(root_dir=storage).start()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            pushed = list(pool.map(lambda n: registry.push(layout, n[0], n[1], n[2]), names))
    finally:
        registry.stop()
    return Corpus(storage, {f"{repo}:{tag}": digest for (_, repo, tag), digest in zip(names, pushed, strict=True)})
