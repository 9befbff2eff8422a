"""Second round (issue 15): ecr-transfer against regsync and crane, not only skopeo sync.

`python -m bench.round2` runs, on corpora of its own (kept in the work directory like the first
round's), every tool found on PATH, in alternating order, `--reps` times, and writes
`bench/results/<date>-round2.{json,md}`:

- noop-300: 300 tags in 10 repositories, destination already in sync;
- noop-3000: 3,000 tags in one repository, in sync (skopeo sync left out: ~35 s a run);
- noop-1000, noop-10000: 1,000 tags in 10 repositories and 10,000 in 20, in sync, against the
  protocol floor (target: within 1.25x of it) and the peers (skopeo sync left out from 1,000 tags);
- small: cold copy of 200 small images (a shared base and a distinct 4 KB layer each), one repository;
- wan: cold copy of 12 images of 5 MB sharing 2 base layers, 4 repositories, behind the WAN
  proxy (20-25 ms each way), every tool at the same concurrency (10);
- xborder: the cross-border profile: 12 images in 6 repositories sharing an 8 MB OS layer (all)
  and one of two 16 MB runtime layers (3 repositories each), 2 MB of their own; the destination
  behind 150-200 ms of round trip and ONE link of 40 Mbit/s each way (`--xborder-mbit`), shared
  by every connection (a token bucket in the proxy); the source near (1-2 ms round trip);
- the `tls` profile runs every scenario again with HTTPS registries and a private CA that every
  tool is told to trust (the protocol floor speaks plain HTTP only: not run there); the WAN
  proxies forward the TLS bytes as they are.

Cold runs count each blob's completed uploads at the destination (its access log): `uploads` per
digest in the JSON, and the bytes the proxies forwarded each way (`link_bytes`).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tests.support.tls import TestCA, TlsRegistry, make_ca

from bench import corpus, measure, peers, report2, stage, tools
from bench.measure import Run, Skopeo, summarize_requests
from ecr_transfer.local.oci import Layer, LayoutWriter
from ecr_transfer.local.registry import LocalRegistry

RESULTS = Path(__file__).resolve().parent / "results"
Tool = Callable[[tools.Target, str], Run]


@dataclass(frozen=True)
class Shape:
    name: str
    repos: int
    tags: int
    layer_bytes: int = 4096
    bases: int = 1
    base_bytes: int = 0
    common_bytes: int = 0
    """A layer under every image (an OS base), below its group's base layer; 0: none."""
    net: str = ""
    """The proxies before the registries (NETWORKS); "": none (loopback)."""


@dataclass(frozen=True)
class Net:
    """One proxy: one-way delay drawn per connection, bytes in flight per connection, a shared link cap."""

    min_ms: float
    max_ms: float
    rate_mbit: float = 0.0
    window: int = 4 << 20


NETWORKS: dict[str, tuple[Net | None, Net | None]] = {
    # (before the source, before the destination); None: the registry itself.
    "wan": (Net(20.0, 25.0), Net(20.0, 25.0)),
    # A copier next to the source pushing across a border: the uploads cross the capped link.
    "xborder": (Net(0.5, 1.0), Net(75.0, 100.0, rate_mbit=40.0)),
}

SHAPES = {
    "noop-300": Shape("noop-300", 10, 300),
    "noop-3000": Shape("noop-3000", 1, 3000),
    "noop-1000": Shape("noop-1000", 10, 1000),
    "noop-10000": Shape("noop-10000", 20, 10000),
    "small": Shape("small", 1, 200),
    "wan": Shape("wan", 4, 12, layer_bytes=1_000_000, bases=2, base_bytes=4_000_000, net="wan"),
    "xborder": Shape(
        "xborder", 6, 12, layer_bytes=2_000_000, bases=2, base_bytes=16_000_000, common_bytes=8_000_000, net="xborder"
    ),
}


def build(workdir: Path, shape: Shape, scale: float = 1.0) -> corpus.Corpus:
    tags = max(2, int(shape.tags * scale))
    c = corpus.Corpus(workdir / "layouts" / f"r2-{shape.name}-{tags}")
    marker = c.layout / "corpus.json"
    if marker.exists():
        return corpus._finish(c, marker)
    bases = [
        Layer.random(shape.base_bytes, f"r2-{shape.name}-base-{b}")
        if shape.base_bytes
        else Layer.text("etc/r2", "r2\n")
        for b in range(shape.bases)
    ]
    common = [Layer.random(shape.common_bytes, f"r2-{shape.name}-common")] if shape.common_bytes else []
    # One writer: index.json written once, not once per image (quadratic at 10,000 tags).
    with LayoutWriter(c.layout) as writer:
        for k in range(tags):
            repo = f"r2/{shape.name}-{k % shape.repos:02d}" if shape.repos > 1 else f"r2/{shape.name}"
            app = Layer.random(shape.layer_bytes, f"r2-{shape.name}-{k}")
            image = writer.image(f"t{k}", [*common, bases[k % shape.bases], app])
            c.tags[f"t{k}"] = f"{repo}:v{k}"
            c.digests[f"{repo}:v{k}"] = image.digest
    return corpus._finish(c, marker)


@dataclass
class Bench2:
    workdir: Path
    reps: int
    skopeo: Skopeo
    before_src: Path | None = None
    only: tuple[str, ...] = ()
    proxy_logs: Path | None = None
    """Where the proxies write their HTTP request lines (--proxy-logs), for timelines."""
    runs: list[Run] = field(default_factory=list)

    def contenders(self, *, floor: bool, sync: bool) -> list[tuple[str, Tool]]:
        out: list[tuple[str, Tool]] = [("ecr-transfer", lambda t, tag: tools.ecr_transfer(t, self.skopeo, tag=tag))]
        if self.before_src is not None:
            src = self.before_src
            out.append(("ecr-transfer (before)", lambda t, tag: tools.ecr_transfer(t, self.skopeo, tag=tag, src=src)))
        found = peers.found()
        if "regsync" in found:
            out.append(("regsync", lambda t, tag: peers.regsync(t, tag=tag)))
        if "crane" in found:
            out.append(("crane", lambda t, tag: peers.crane(t, tag=tag)))
        if sync:
            out.append(("skopeo sync", lambda t, tag: tools.skopeo_sync(t, self.skopeo, tag=tag)))
        if floor:
            out.append(("protocol floor", lambda t, tag: tools.floor_heads(t, tag=tag)))
        return [(n, t) for n, t in out if not self.only or n in self.only]

    def record(
        self, run: Run, scenario: str, profile: str, rep: int, name: str, requests: dict[str, dict[str, int]]
    ) -> None:
        run.tool, run.scenario, run.profile, run.rep = name, scenario, profile, rep
        run.requests = requests
        self.runs.append(run)
        state = "ok" if run.ok else f"FAILED {run.stderr_tail[-300:]} {run.note}"
        print(
            f"  {scenario:9s} {profile:8s} rep {rep} {name:22s} {run.wall:7.2f}s cpu tool {run.cpu_tool_s:5.2f}s "
            f"load {os.getloadavg()[0]:.1f} {state}",
            file=sys.stderr,
            flush=True,
        )


def requests_of(src: LocalRegistry, dst: LocalRegistry) -> dict[str, dict[str, int]]:
    return {"source": summarize_requests(src.requests()), "destination": summarize_requests(dst.requests())}


@contextmanager
def serving(storage: Path | None, ca: TestCA | None) -> Iterator[LocalRegistry]:
    """A registry over `storage` (a fresh one when None): HTTPS with the bench CA in the tls profile."""
    reg: LocalRegistry = LocalRegistry(root_dir=storage) if ca is None else TlsRegistry(ca, root_dir=storage)
    reg.start()
    try:
        yield reg
    finally:
        reg.stop(keep_storage=storage is not None)


def trust(ca: TestCA | None) -> Path | None:
    """The CA alone in a directory: skopeo's cert dir would take server.key for a client key."""
    if ca is None:
        return None
    path = ca.ca.parent / "trust" / "ca.crt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca.ca, path)
    return path


def verify(storage: Path, images: corpus.Corpus) -> list[str]:
    """Refs whose digest at the destination is not the corpus's (read over plain HTTP afterwards)."""
    with stage.registry(storage) as plain:
        landed = stage.digests_at(plain.host, images.refs)
    return [r for r in images.refs if landed[r] != images.digests[r]]


def noop(bench: Bench2, scenario: str, profile: str, images: corpus.Corpus, ca: TestCA | None) -> None:
    src_store = stage.seeded(bench.workdir, images.layout.name, [images])
    dst_store = stage.seeded(bench.workdir, images.layout.name + "-dest", [], base=src_store)
    items = bench.contenders(floor=ca is None, sync=len(images.refs) < 1000)
    with serving(src_store, ca) as src, serving(dst_store, ca) as dst:
        for rep in range(bench.reps):
            k = rep % len(items)
            for name, tool in items[k:] + items[:k]:
                target = tools.Target(src.host, dst.host, images.repositories(), bench.workdir / "runs", ca=trust(ca))
                src.reset_requests()
                dst.reset_requests()
                run = tool(target, f"{scenario}-{profile}-{rep}-{name}")
                bench.record(run, scenario, profile, rep, name, requests_of(src, dst))


def blob_sizes(images: corpus.Corpus) -> dict[str, int]:
    return {f"sha256:{p.name}": p.stat().st_size for p in (images.layout / "blobs" / "sha256").iterdir()}


def cold(bench: Bench2, scenario: str, profile: str, images: corpus.Corpus, ca: TestCA | None, net: str = "") -> None:
    src_store = stage.seeded(bench.workdir, images.layout.name, [images])
    items = bench.contenders(floor=False, sync=True)
    if not items:
        return
    sizes = blob_sizes(images)
    src_net, dst_net = NETWORKS.get(net, (None, None))
    with serving(src_store, ca) as src:
        for rep in range(bench.reps):
            k = rep % len(items)
            for name, tool in items[k:] + items[:k]:
                storage = Path(tempfile.mkdtemp(prefix="r2-dst-", dir=bench.workdir / "runs"))
                tag = f"{scenario}-{profile}-{rep}-{name}"
                with (
                    serving(storage, ca) as dst,
                    fronts(src_net, bench) as src_side,
                    fronts(dst_net, bench) as dst_side,
                ):
                    target = tools.Target(
                        src_side.front(src, f"{tag}-source"), dst_side.front(dst, f"{tag}-destination"),
                        images.repositories(), bench.workdir / "runs", ca=trust(ca),
                    )  # fmt: skip
                    src.reset_requests()
                    run = tool(target, tag)
                    down, up = src_side.drop(src), dst_side.drop(dst)
                    run.link_bytes = {"source_down": down.get("bytes_down", 0), "destination_up": up.get("bytes_up", 0)}
                    raw = dst.requests()
                    requests = {"source": summarize_requests(src.requests()), "destination": summarize_requests(raw)}
                uploads = measure.uploads_per_digest(raw)
                run.uploads = dict(sorted(uploads.items()))
                run.uploaded_bytes = sum(sizes.get(d, 0) * n for d, n in uploads.items())
                run.blobs_uploaded_twice = sum(1 for n in uploads.values() if n > 1)
                wrong = verify(storage, images)
                if wrong:
                    run.ok, run.note = False, f"{len(wrong)} images missing or different: {wrong[:3]}"
                bench.record(run, scenario, profile, rep, name, requests)
                shutil.rmtree(storage, ignore_errors=True)


@contextmanager
def fronts(net: Net | None, bench: Bench2) -> Iterator[stage.Fronts]:
    """The proxy side of one run (one proxy per registry, fresh each run so its byte counts are the run's)."""
    n = net or Net(0.0, 0.0)
    side = stage.Fronts(
        net is not None, n.min_ms, n.max_ms, n.window, 3600.0, rate_mbit=n.rate_mbit, log_dir=bench.proxy_logs
    )
    try:
        yield side
    finally:
        side.close()


def byte_compile(*extra: Path | None) -> None:
    """Byte-compile the product as `pip install` does: with PYTHONDONTWRITEBYTECODE set (as on these
    machines) an editable install would otherwise compile every module from source at every start."""
    import ecr_transfer

    for tree in (Path(ecr_transfer.__file__).parent, *(p for p in extra if p is not None)):
        compileall.compile_dir(str(tree), quiet=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.round2", description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ecr-transfer-bench")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--scenarios", default="noop-300,noop-3000,small,wan")
    p.add_argument("--profiles", default="loopback,tls", help="loopback,tls (wan is its own scenario)")
    p.add_argument("--tools", default="", help="only these tools, comma-separated")
    p.add_argument("--before-src", type=Path, help="also run the product from this src/ (an earlier commit)")
    p.add_argument("--scale", type=float, default=1.0, help="tags per scenario times this (smoke: 0.05)")
    p.add_argument("--tag", default="round2", help="results file stem suffix")
    p.add_argument("--xborder-mbit", type=float, default=40.0, help="the cross-border link's cap, each way")
    p.add_argument("--proxy-logs", type=Path, help="proxies log each HTTP request line here (plain HTTP)")
    args = p.parse_args(argv)
    src_net, dst_net = NETWORKS["xborder"]
    assert dst_net is not None
    NETWORKS["xborder"] = (src_net, Net(dst_net.min_ms, dst_net.max_ms, args.xborder_mbit, dst_net.window))
    shutil.rmtree(args.workdir / "runs", ignore_errors=True)
    (args.workdir / "runs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    byte_compile(args.before_src)
    machine = measure.machine()
    bench = Bench2(
        args.workdir, args.reps, Skopeo(args.workdir / "runs", measure.can_isolate_cache()), args.before_src,
        tuple(t for t in args.tools.split(",") if t), args.proxy_logs,
    )  # fmt: skip
    chosen = [s for s in args.scenarios.split(",") if s]
    corpora = {name: build(args.workdir, SHAPES[name], args.scale) for name in chosen}
    ca = make_ca(args.workdir / "runs" / "ca")
    for profile in args.profiles.split(","):
        for name in chosen:
            tls = ca if profile == "tls" else None
            net = SHAPES[name].net
            if name.startswith("noop"):
                noop(bench, name, profile, corpora[name], tls)
            else:
                # The proxies forward TLS bytes as they are: "wan-tls" is the same network over HTTPS.
                label = (net + ("-tls" if tls else "")) if net else profile
                cold(bench, name, label, corpora[name], tls, net)
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc = {
        "date": date.today().isoformat(),
        "machine": machine,
        "peers": peers.versions(),
        "missing": [name for name in peers.PEERS if name not in peers.found()],
        "corpus": {
            name: {"tags": len(c.tags), "repositories": len(c.repositories()), "unique_bytes": c.unique_bytes}
            for name, c in corpora.items()
        },
        "networks": {name: [vars(n) if n else None for n in sides] for name, sides in NETWORKS.items()},
        "reps": args.reps,
        "wall_seconds": round(time.monotonic() - started, 1),
        "runs": [r.to_dict() for r in bench.runs],
    }
    stem = f"{doc['date']}-{args.tag}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    text = report2.markdown(doc, bench.runs)
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
