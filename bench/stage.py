"""The stage the tools run on: seeded source registries, fresh destinations, WAN proxies.

Seeded registry storage is kept in the work directory keyed by corpus, so a second `make bench`
skips building and pushing. Destinations are fresh registries per run (cold), one in-sync copy
of the warm source (warm no-op: nothing changes it), or that copy put back after each run by a
handful of API calls (small change), which is much faster than copying 20,000 files.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench import corpus, rawhttp
from bench.measure import process_cpu
from ecr_transfer.local.oci import OCI_INDEX, read_blob
from ecr_transfer.local.registry import LocalRegistry

REPO_ROOT = Path(__file__).resolve().parent.parent


def seeded(workdir: Path, name: str, corpora: list[corpus.Corpus], base: Path | None = None) -> Path:
    """Storage directory holding `corpora` (on top of a copy of `base`), built once."""
    storage = workdir / "storage" / name
    marker = storage / ".seeded"
    if marker.exists():
        return storage
    shutil.rmtree(storage, ignore_errors=True)
    storage.parent.mkdir(parents=True, exist_ok=True)
    if base is not None:
        subprocess.run(["cp", "-a", str(base), str(storage)], check=True)
        (storage / ".seeded").unlink(missing_ok=True)
    registry = LocalRegistry(root_dir=storage).start()
    try:
        for c in corpora:
            corpus.push(registry.host, c)
    finally:
        registry.stop()
    marker.write_text("ok")
    return storage


class Fronts:
    """Addresses the tools use: the registry itself (loopback) or a delaying proxy before it (WAN).

    `rate_mbit`: each proxy also caps its link, one shared token bucket per direction (the
    cross-border profile). `log_dir`: each proxy writes its HTTP request lines there (timelines).
    `drop` returns what the proxy forwarded ({"bytes_up", "bytes_down", "connections"}).
    """

    def __init__(
        self,
        wan: bool,
        min_ms: float,
        max_ms: float,
        window: int,
        max_seconds: float,
        *,
        rate_mbit: float = 0.0,
        log_dir: Path | None = None,
    ) -> None:
        self.wan = wan
        self.args = ["--min-ms", str(min_ms), "--max-ms", str(max_ms), "--window", str(window)]
        self.args += ["--max-seconds", str(max_seconds)]
        if rate_mbit:
            self.args += ["--rate-mbit", str(rate_mbit)]
        self.log_dir = log_dir
        self._procs: dict[str, subprocess.Popen[str]] = {}
        self._stats: dict[str, Path] = {}
        self._work = Path(tempfile.mkdtemp(prefix="fronts-"))
        self._n = 0

    def front(self, registry: LocalRegistry, name: str = "") -> str:
        if not self.wan:
            return registry.host
        if registry.host not in self._procs:
            self._n += 1
            stats = self._work / f"stats-{self._n}.json"
            extra = ["--stats", str(stats)]
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                extra += ["--log", str(self.log_dir / f"{name or self._n}.log")]
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.proxy", "--upstream", registry.host, *self.args, *extra],
                stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            )  # fmt: skip
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            self._procs[registry.host] = proc
            self._stats[registry.host] = stats
            return f"127.0.0.1:{port}"
        raise RuntimeError(f"{registry.host} already has a front")

    def cpu(self) -> float:
        """CPU seconds the running proxies have used so far."""
        return sum(process_cpu(proc.pid) for proc in self._procs.values())

    def drop(self, registry: LocalRegistry) -> dict[str, int]:
        proc = self._procs.pop(registry.host, None)
        stats = self._stats.pop(registry.host, None)
        if proc is None or stats is None:
            return {}
        proc.terminate()
        proc.wait(timeout=10)
        try:
            return dict(json.loads(stats.read_text()))
        except (OSError, ValueError):
            return {}

    def close(self) -> None:
        for host in list(self._procs):
            proc = self._procs.pop(host)
            proc.terminate()
            proc.wait(timeout=10)
        shutil.rmtree(self._work, ignore_errors=True)


def registries_cpu(*registries: LocalRegistry) -> float:
    """CPU seconds the registry processes have used so far."""
    # LocalRegistry has no public pid; its Popen is read here, never changed.
    return sum(process_cpu(r._proc.pid if r._proc is not None else None) for r in registries)


@contextmanager
def registry(storage: Path | None = None) -> Iterator[LocalRegistry]:
    reg = LocalRegistry(root_dir=storage).start()
    try:
        yield reg
    finally:
        reg.stop()


def restore_changed(address: str, warm: corpus.Corpus, changed: corpus.Corpus) -> None:
    """Put the changed tags back to their warm images and unlink the new blobs: in sync again."""
    for _ in range(3):
        asyncio.run(_restore(address, warm, changed))
        found = digests_at(address, changed.refs)
        wrong = {ref: found[ref] for ref in changed.refs if found[ref] != warm.digests[ref]}
        if not wrong:
            return
    raise RuntimeError(f"destination not back in sync after 3 tries: {wrong}")


async def _restore(address: str, warm: corpus.Corpus, changed: corpus.Corpus) -> None:
    pool = rawhttp.Pool(address, 4)
    warm_index = _descriptors(warm.layout)
    try:
        for layout_tag, ref in changed.tags.items():
            repo, _, tag = ref.rpartition(":")
            new_digest = changed.digests[ref]
            current = await rawhttp.head_manifest(pool, repo, tag)
            if current == new_digest:
                # Deleting by digest drops every tag pointing at it; the old one is put back next.
                await pool.request("DELETE", f"/v2/{repo}/manifests/{new_digest}")
            old = warm_index[layout_tag]
            body = read_blob(warm.layout, old["digest"])
            await rawhttp.put_manifest(pool, repo, tag, old["mediaType"], body)
            new_doc = json.loads(read_blob(changed.layout, new_digest))
            assert new_doc.get("mediaType") != OCI_INDEX
            for blob in [new_doc["config"], new_doc["layers"][-1]]:
                await pool.request("DELETE", f"/v2/{repo}/blobs/{blob['digest']}")
    finally:
        pool.close()


def _descriptors(layout: Path) -> dict[str, dict[str, str]]:
    index = json.loads((layout / "index.json").read_bytes())
    return {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}


def digests_at(address: str, refs: list[str], concurrency: int = 8) -> dict[str, str | None]:
    async def main() -> dict[str, str | None]:
        pool = rawhttp.Pool(address, concurrency)
        found: dict[str, str | None] = {}

        async def one(ref: str) -> None:
            repo, _, tag = ref.rpartition(":")
            found[ref] = await rawhttp.head_manifest(pool, repo, tag)

        try:
            await rawhttp.bounded(refs, concurrency, one)
        finally:
            pool.close()
        return found

    return asyncio.run(main())
