"""The open-source syncers users would pick instead of us, run the way their docs suggest.

Neither is shipped, built or installed by this project: the benchmark runs them only when they
are on PATH (`regsync`, `crane`) and says in the results when they are not.

- regsync (regclient): `regsync once -c FILE`, one `type: repository` entry per repository,
  `parallel: <concurrency>` (the same concurrency every tool gets).
- crane (go-containerregistry): `crane copy --all-tags --jobs <concurrency> SRC/repo DST/repo`,
  one process per repository, up to CRANE_REPOS_AT_ONCE of them at a time (crane copies one
  repository per process; running them side by side is what a user with many repositories does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from bench.measure import Proc, Run, run_process
from bench.tools import Target

CRANE_REPOS_AT_ONCE = 4
PEERS = ("regsync", "crane")


def found() -> dict[str, str]:
    """Peer name -> its path, for the peers on PATH."""
    return {name: path for name in PEERS if (path := shutil.which(name))}


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, path in found().items():
        argv = [path, "version"]
        try:
            text = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
        except OSError as exc:
            text = str(exc)
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        out[name] = "; ".join(lines[:2]) if lines else "?"
    return out


def _env(target: Target, tag: str) -> dict[str, str]:
    env = {**os.environ, "BENCH_STDERR": str(target.workdir / f"stderr-{tag}.txt")}
    if target.ca is not None:
        # Go reads SSL_CERT_FILE instead of the system store: the bench CA is then the only one.
        env["SSL_CERT_FILE"] = str(target.ca)
    return env


def regsync(target: Target, *, tag: str) -> Run:
    config = target.workdir / f"regsync-{tag}.yaml"
    tls = "enabled" if target.ca is not None else "disabled"
    doc = {
        "version": 1,
        "creds": [{"registry": host, "tls": tls} for host in sorted({target.src, target.dst})],
        "defaults": {"parallel": target.concurrency},
        "sync": [
            {"source": f"{target.src}/{repo}", "target": f"{target.dst}/{repo}", "type": "repository"}
            for repo in target.repos
        ],
    }
    config.write_text(json.dumps(doc, indent=1))  # YAML is a superset of JSON
    argv = [found()["regsync"], "once", "-c", str(config), "-v", "warn"]
    p = run_process(argv, _env(target, tag), timeout=target.timeout)
    return Run(
        "regsync", p.wall, p.rc, p.tail if p.rc else "", maxrss_tree_kb=p.tree_kb, ok=p.rc == 0, cpu_tool_s=p.cpu
    )


def crane(target: Target, *, tag: str) -> Run:
    env = _env(target, tag)
    binary = found()["crane"]

    def one(index_repo: tuple[int, str]) -> Proc:
        index, repo = index_repo
        argv = [binary, "copy", "--all-tags", "--jobs", str(target.concurrency)]
        if target.ca is None:
            argv.append("--insecure")
        argv += [f"{target.src}/{repo}", f"{target.dst}/{repo}"]
        return run_process(argv, {**env, "BENCH_STDERR": f"{env['BENCH_STDERR']}.{index}"}, timeout=target.timeout)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CRANE_REPOS_AT_ONCE) as pool:
        results = list(pool.map(one, enumerate(target.repos)))
    wall = time.perf_counter() - started
    failed = [r for r in results if r.rc != 0]
    return Run(
        "crane", wall, 1 if failed else 0, failed[0].tail if failed else "",
        maxrss_tree_kb=max((r.tree_kb for r in results), default=0), ok=not failed,
        cpu_tool_s=sum(r.cpu for r in results),
    )  # fmt: skip
