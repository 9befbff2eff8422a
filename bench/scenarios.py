"""cold, warm no-op and small change: every tool on the same corpus, alternating order, repeated."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import corpus, stage, tools
from bench.measure import Run, Skopeo, summarize_requests, uploaded_twice
from ecr_transfer.local.registry import LocalRegistry

Tool = Callable[[tools.Target, str], Run]
BEFORE = "ecr-transfer (before)"


@dataclass(frozen=True)
class Params:
    sizes: corpus.Sizes = field(default_factory=corpus.Sizes)
    reps: int = 3
    profiles: tuple[str, ...] = ("loopback", "wan")
    scenarios: tuple[str, ...] = ("cold", "warm", "change")
    sample: int = 50
    """The plugin's no-op on loopback runs on this many tags, scaled to all (see wan_sample)."""
    wan_sample: int = 40
    """skopeo sync and the plugin handle tags one by one or ten at a time, so their no-op time is
    linear in tags; on the WAN profile (about 1 s a tag for skopeo sync) they run on this many."""
    min_ms: float = 20.0
    max_ms: float = 25.0
    window: int = 4 << 20
    concurrency: int = 10
    head_concurrency: int = 16
    """The product's manifest-HEAD pool per registry: the protocol floor uses the same."""
    timeout: float = 900.0
    tools: tuple[str, ...] = ()
    """Only these tools (names as in the tables); empty: all."""
    before_src: Path | None = None
    """Also run the product from this source tree (`src/` of an earlier commit) as "ecr-transfer (before)"."""


@dataclass
class Bench:
    params: Params
    workdir: Path
    skopeo: Skopeo
    runs: list[Run] = field(default_factory=list)
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)

    def target(self, src: str, dst: str, repos: dict[str, list[str]], explicit: bool = False) -> tools.Target:
        p = self.params
        return tools.Target(
            src, dst, repos, self.workdir / "runs", p.concurrency, p.head_concurrency, p.timeout, explicit
        )

    @staticmethod
    def measured(
        tool: Tool, target: tools.Target, tag: str, name: str, fronts: stage.Fronts, *regs: LocalRegistry
    ) -> Run:
        """Run one tool, adding what the registries and proxies spent on it: where CPU is the limit."""
        registries, proxies = stage.registries_cpu(*regs), fronts.cpu()
        run = tool(target, f"{tag}-{name.replace(' ', '_')}")
        run.cpu_registries_s = round(stage.registries_cpu(*regs) - registries, 2)
        run.cpu_proxies_s = round(fronts.cpu() - proxies, 2)
        run.cpu_tool_s = round(run.cpu_tool_s, 2)
        return run

    @staticmethod
    def collect(run: Run, src: LocalRegistry, dst: LocalRegistry) -> None:
        """Requests since the last reset_requests(): read before anything else talks to them."""
        dst_requests = dst.requests()
        run.requests = {"source": summarize_requests(src.requests()), "destination": summarize_requests(dst_requests)}
        run.blobs_uploaded_twice = uploaded_twice(dst_requests)

    def record(self, run: Run, scenario: str, profile: str, rep: int, tool: str) -> Run:
        run.tool = tool
        run.scenario, run.profile, run.rep = scenario, profile, rep
        self.runs.append(run)
        scaled = f" (x{run.scale:g} sample)" if run.scale != 1 else ""
        state = "ok" if run.ok else f"FAILED {run.stderr_tail[-300:]} {run.note}"
        cpu = run.cpu_tool_s + run.cpu_registries_s + run.cpu_proxies_s
        self.log(
            f"  {scenario:6s} {profile:8s} rep {rep} {run.tool:16s} {run.wall * run.scale:8.2f}s{scaled} "
            f"cpu {cpu:6.1f}s ({cpu / run.wall:.2f} cores) {state}"
        )
        return run


def rotate(items: list[tuple[str, Tool]], rep: int, only: tuple[str, ...] = ()) -> list[tuple[str, Tool]]:
    """Alternating order: each tool goes first in some repetition, so warm caches favour no one."""
    items = [(n, t) for n, t in items if not only or n in only]
    k = rep % max(1, len(items))
    return items[k:] + items[:k]


def sample(repos: dict[str, list[str]], n: int) -> tuple[dict[str, list[str]], float]:
    """About n tags spread evenly over the repositories, and the factor from the sample to all."""
    flat = [(repo, tag) for repo, tags in repos.items() for tag in tags]
    if n >= len(flat):
        return repos, 1.0
    step = len(flat) / n
    picked = [flat[int(i * step)] for i in range(n)]
    out: dict[str, list[str]] = {}
    for repo, tag in picked:
        out.setdefault(repo, []).append(tag)
    return out, len(flat) / len(picked)


def contenders(bench: Bench) -> list[tuple[str, Tool]]:
    found: list[tuple[str, Tool]] = [
        ("ecr-transfer", lambda t, tag: tools.ecr_transfer(t, bench.skopeo, tag=tag)),
        ("skopeo sync", lambda t, tag: tools.skopeo_sync(t, bench.skopeo, tag=tag)),
        ("plugin", lambda t, tag: tools.skopeo_copies(t, bench.skopeo, tag=tag)),
    ]
    if bench.params.before_src is not None:
        # Before/after of a product change, interleaved in the same run: `git worktree add DIR COMMIT`.
        before = bench.params.before_src
        found.insert(1, (BEFORE, lambda t, tag: tools.ecr_transfer(t, bench.skopeo, tag=tag, src=before)))
    return found


def cold(bench: Bench, profile: str, fronts: stage.Fronts, source: Path, images: corpus.Corpus) -> None:
    items = contenders(bench)
    if profile == "loopback":
        items.append(("upload ceiling", lambda t, tag: tools.floor_upload(t, images.layout, tag=tag)))
    with stage.registry(source) as src:
        src_front = fronts.front(src)
        for rep in range(bench.params.reps):
            for name, tool in rotate(items, rep, bench.params.tools):
                with stage.registry() as dst:
                    target = bench.target(src_front, fronts.front(dst), images.repositories())
                    src.reset_requests()
                    dst.reset_requests()
                    run = bench.measured(tool, target, f"cold-{profile}-{rep}", name, fronts, src, dst)
                    bench.collect(run, src, dst)
                    if name != "upload ceiling":
                        landed = stage.digests_at(dst.host, images.refs)
                        wrong = [r for r in images.refs if landed[r] != images.digests[r]]
                        if wrong:
                            run.ok, run.note = False, f"{len(wrong)} images missing or different: {wrong[:3]}"
                    bench.record(run, "cold", profile, rep, name)
                    fronts.drop(dst)
        fronts.drop(src)


def warm(bench: Bench, profile: str, fronts: stage.Fronts, source: Path, dest: Path, tags: corpus.Corpus) -> None:
    items = [*contenders(bench), ("protocol floor", lambda t, tag: tools.floor_heads(t, tag=tag))]
    repos = tags.repositories()
    with stage.registry(source) as src, stage.registry(dest) as dst:
        src_front, dst_front = fronts.front(src), fronts.front(dst)
        for rep in range(bench.params.reps):
            for name, tool in rotate(items, rep, bench.params.tools):
                target, scale = bench.target(src_front, dst_front, repos), 1.0
                if name == "plugin" or (profile == "wan" and name == "skopeo sync"):
                    size = bench.params.wan_sample if profile == "wan" else bench.params.sample
                    picked, scale = sample(repos, size)
                    target = replace(target, repos=picked, explicit=scale != 1)
                src.reset_requests()
                dst.reset_requests()
                run = bench.measured(tool, target, f"warm-{profile}-{rep}", name, fronts, src, dst)
                run.scale = scale
                bench.collect(run, src, dst)
                bench.record(run, "warm", profile, rep, name)
        fronts.drop(src)
        fronts.drop(dst)


def change(
    bench: Bench,
    profile: str,
    fronts: stage.Fronts,
    source: Path,
    dest: Path,
    tags: corpus.Corpus,
    changed: corpus.Corpus,
) -> None:
    # The plugin has no change detection: its small change is its no-op plus the copies, so it
    # is not run again here. skopeo sync is a full run per tag: loopback only, for the time budget.
    keep = ("ecr-transfer", BEFORE, "skopeo sync") if profile == "loopback" else ("ecr-transfer", BEFORE)
    items = [(name, tool) for name, tool in contenders(bench) if name in keep]
    items.append(("copy changed", lambda t, tag: tools.skopeo_copies(t, bench.skopeo, tag=tag, refs=changed.refs)))
    with stage.registry(source) as src, stage.registry(dest) as dst:
        src_front, dst_front = fronts.front(src), fronts.front(dst)
        stage.restore_changed(dst.host, tags, changed)
        for rep in range(bench.params.reps):
            for name, tool in rotate(items, rep, bench.params.tools):
                target = bench.target(src_front, dst_front, tags.repositories())
                src.reset_requests()
                dst.reset_requests()
                run = bench.measured(tool, target, f"change-{profile}-{rep}", name, fronts, src, dst)
                bench.collect(run, src, dst)
                landed = stage.digests_at(dst.host, changed.refs)
                wrong = [r for r in changed.refs if landed[r] != changed.digests[r]]
                if wrong:
                    time.sleep(1)
                    again = stage.digests_at(dst.host, wrong)
                    seen = {r: (landed[r], again[r]) for r in wrong}
                    run.ok, run.note = False, f"{len(wrong)} changed images not copied (found, 1 s later): {seen}"
                bench.record(run, "change", profile, rep, name)
                started = time.perf_counter()
                stage.restore_changed(dst.host, tags, changed)
                bench.log(f"    (destination put back in sync in {time.perf_counter() - started:.2f}s)")
        fronts.drop(src)
        fronts.drop(dst)
