"""The contenders and the floors, each run the way its user would run it.

- ecr-transfer: the CLI, `run --config FILE --ledger PATH --json`, `repo:ALL_TAGS` per repository.
- skopeo sync: one process, a YAML source listing every repository (all tags), `--all`.
- plugin: the Data Transfer Hub ECR plugin's approach: one `skopeo copy --all` per tag, 10 at a
  time, no digest check (its list Lambda's tag listing is not timed: that favours it).
- floors: `python -m bench.floor` (bare asyncio HEADs, or monolithic blob PUTs).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench.measure import CLI_PROBE, Proc, Run, Skopeo, read_probe, run_process

PLUGIN_PARALLELISM = 10
"""The plugin's Step Functions Map ran at most 10 copies at once."""
POLICY = Path("/etc/containers/policy.json")


@dataclass(frozen=True)
class Target:
    """Where one run reads and writes, as the tools see it (proxies in the WAN profile)."""

    src: str
    dst: str
    repos: dict[str, list[str]]
    """Repository -> tags, the selection every tool is given."""
    workdir: Path
    concurrency: int = 10
    head_concurrency: int = 16
    timeout: float = 900.0
    explicit: bool = False
    """Name every tag (a sample) instead of asking for all tags of each repository."""
    ca: Path | None = None
    """TLS profile: both registries speak HTTPS with a certificate from this CA (PEM), trusted by every tool."""

    @property
    def refs(self) -> list[str]:
        return [f"{repo}:{tag}" for repo, tags in self.repos.items() for tag in tags]

    @property
    def namespace(self) -> str:
        spaces = {repo.rpartition("/")[0] for repo in self.repos}
        if len(spaces) != 1:
            raise ValueError(f"skopeo sync needs one destination namespace, got {sorted(spaces)}")
        return spaces.pop()


def _skopeo_global() -> list[str]:
    # Same rule as the product: without a host policy skopeo refuses to run at all.
    return [] if POLICY.exists() else ["--insecure-policy"]


def ecr_transfer(target: Target, skopeo: Skopeo, *, tag: str, src: Path | None = None) -> Run:
    """`src`: run the product from another source tree (an earlier commit) instead of the installed one."""
    env = {**os.environ, **skopeo.fresh()}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    config = target.workdir / f"ecr-transfer-{tag}.yaml"
    ledger = target.workdir / f"ledger-{tag}.db"
    probe = target.workdir / f"probe-{tag}.json"
    for stale in (ledger, probe):
        stale.unlink(missing_ok=True)
    settings = {
        "sourceType": "Public",
        "srcList": "SELECTED",
        "srcImageList": ",".join(f"{target.src}/{repo}:ALL_TAGS" for repo in target.repos),
        "destType": "Registry",
        "destRegistry": target.dst,
        "insecureRegistries": [target.src, target.dst],
        "concurrency": target.concurrency,
    }
    if target.ca is not None:
        del settings["insecureRegistries"]
        settings["registryCaBundles"] = {host: str(target.ca) for host in (target.src, target.dst)}
    config.write_text(json.dumps(settings, indent=1))
    env["BENCH_PROBE_OUT"] = str(probe)
    env["BENCH_STDERR"] = str(target.workdir / f"stderr-{tag}.txt")
    env["BENCH_STDOUT"] = str(target.workdir / f"stdout-{tag}.json")
    argv = [sys.executable, str(CLI_PROBE), "run", "--config", str(config), "--ledger", str(ledger), "--json"]
    p = run_process(argv, env, timeout=target.timeout)
    info = read_probe(probe)
    maxrss = info.get("maxrss_kb")
    run = Run(
        "ecr-transfer", p.wall, p.rc, p.tail if p.rc else "", Skopeo.count(env),
        maxrss_self_kb=int(maxrss) if isinstance(maxrss, int) else None, maxrss_tree_kb=p.tree_kb,
        boto3_imported=bool(info.get("boto3")), ok=p.rc == 0, cpu_tool_s=p.cpu,
    )  # fmt: skip
    try:
        run.note = json.dumps(json.loads(Path(env["BENCH_STDOUT"]).read_text())["counts"])
    except (OSError, ValueError, KeyError):
        run.note = "no JSON summary on stdout"
    return run


def skopeo_sync(target: Target, skopeo: Skopeo, *, tag: str) -> Run:
    env = {**os.environ, **skopeo.fresh(), "BENCH_STDERR": str(target.workdir / f"stderr-{tag}.txt")}
    source = target.workdir / f"sync-{tag}.yaml"
    # YAML is JSON's superset; an empty tag list means every tag of the repository.
    images = {repo: tags if target.explicit else [] for repo, tags in target.repos.items()}
    registry: dict[str, object] = {"images": images, "tls-verify": target.ca is not None}
    argv = [env["ECR_TRANSFER_SKOPEO"], *_skopeo_global(), "sync", "--all", "--src", "yaml", "--dest", "docker"]
    if target.ca is None:
        argv.append("--dest-tls-verify=false")
    else:
        registry["cert-dir"] = str(target.ca.parent)
        argv += ["--dest-cert-dir", str(target.ca.parent)]
    source.write_text(json.dumps({target.src: registry}))
    argv += [str(source), f"{target.dst}/{target.namespace}"]
    p = run_process(argv, env, timeout=target.timeout)
    return Run(
        "skopeo sync", p.wall, p.rc, p.tail if p.rc else "", Skopeo.count(env), maxrss_tree_kb=p.tree_kb,
        ok=p.rc == 0, cpu_tool_s=p.cpu,
    )  # fmt: skip


def skopeo_copies(target: Target, skopeo: Skopeo, *, tag: str, refs: list[str] | None = None) -> Run:
    """The plugin: `skopeo copy --all` per tag, PLUGIN_PARALLELISM at a time; also the copy time of N images."""
    env = {**os.environ, **skopeo.fresh()}
    todo = refs if refs is not None else target.refs

    stop = threading.Event()

    def one(ref: str) -> Proc:
        if stop.is_set():
            return Proc(0.0, 130, 0, "interrupted", 0.0)
        argv = [env["ECR_TRANSFER_SKOPEO"], *_skopeo_global(), "copy", "--all"]
        argv += ["--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{target.src}/{ref}"]
        argv += [f"docker://{target.dst}/{ref}"]
        return run_process(argv, env, timeout=target.timeout)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PLUGIN_PARALLELISM) as pool:
        try:
            results = list(pool.map(one, todo))
        except BaseException:
            stop.set()
            raise
    wall = time.perf_counter() - started
    failed = [r for r in results if r.rc != 0]
    return Run(
        "plugin", wall, 1 if failed else 0, failed[0].tail if failed else "", Skopeo.count(env),
        maxrss_tree_kb=max((r.tree_kb for r in results), default=0), ok=not failed,
        cpu_tool_s=sum(r.cpu for r in results),
    )  # fmt: skip


def floor_heads(target: Target, *, tag: str) -> Run:
    env = {**os.environ, "BENCH_STDERR": str(target.workdir / f"stderr-{tag}.txt")}
    argv = [sys.executable, "-m", "bench.floor", "heads", "--src", target.src, "--dst", target.dst]
    argv += ["--concurrency", str(target.head_concurrency), *target.repos]
    p = run_process(argv, env, timeout=target.timeout, cwd=Path(__file__).parent.parent)
    return Run(
        "protocol floor", p.wall, p.rc, p.tail if p.rc else "", maxrss_tree_kb=p.tree_kb, ok=p.rc == 0, cpu_tool_s=p.cpu
    )


def floor_upload(target: Target, layout: Path, *, tag: str) -> Run:
    env = {**os.environ, "BENCH_STDERR": str(target.workdir / f"stderr-{tag}.txt")}
    argv = [sys.executable, "-m", "bench.floor", "upload", "--dst", target.dst, "--layout", str(layout)]
    argv += ["--concurrency", str(target.concurrency)]
    p = run_process(argv, env, timeout=target.timeout, cwd=Path(__file__).parent.parent)
    return Run(
        "upload ceiling", p.wall, p.rc, p.tail if p.rc else "", maxrss_tree_kb=p.tree_kb, ok=p.rc == 0, cpu_tool_s=p.cpu
    )
