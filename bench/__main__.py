"""`python -m bench`: the whole benchmark (what `make bench` runs), or `--smoke` for a quick check."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from datetime import date
from pathlib import Path

from bench import corpus, measure, report, scenarios, stage

RESULTS = Path(__file__).resolve().parent / "results"
SMOKE = scenarios.Params(
    sizes=corpus.Sizes(cold_images=5, cold_mb=10, cold_bases=2, warm_tags=40, warm_repos=3, changed=2, changed_kb=200),
    reps=1,
    sample=10,
    wan_sample=10,
    min_ms=2.0,
    max_ms=3.0,
    timeout=120.0,
)


def _parser() -> argparse.ArgumentParser:
    d = scenarios.Params()
    s = d.sizes
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition, short delays (seconds)")
    p.add_argument("--workdir", type=Path, help="corpus layouts and seeded registries, kept between runs")
    p.add_argument("--out", type=Path, default=RESULTS, help="where <date>.json and <date>.md go")
    p.add_argument("--reps", type=int, default=d.reps)
    p.add_argument("--profiles", default=",".join(d.profiles), help="loopback,wan")
    p.add_argument("--scenarios", default=",".join(d.scenarios), help="cold,warm,change")
    p.add_argument("--tools", default="", help="only these tools, comma-separated (development)")
    p.add_argument("--before-src", type=Path, help="also run the product from this src/ (an earlier commit)")
    p.add_argument("--cold-images", type=int, default=s.cold_images)
    p.add_argument("--cold-mb", type=int, default=s.cold_mb, help="unique bytes of the cold corpus, MB")
    p.add_argument("--warm-tags", type=int, default=s.warm_tags)
    p.add_argument("--warm-repos", type=int, default=s.warm_repos)
    p.add_argument("--changed", type=int, default=s.changed)
    p.add_argument("--sample", type=int, default=d.sample, help="tags given to the plugin's no-op on loopback")
    p.add_argument("--wan-sample", type=int, default=d.wan_sample, help="tags given to skopeo sync/plugin on WAN")
    p.add_argument("--delay-ms", default=f"{d.min_ms:g}-{d.max_ms:g}", help="WAN one-way delay range")
    p.add_argument("--window", type=int, default=d.window, help="WAN bytes in flight per connection direction")
    return p


def params_from(args: argparse.Namespace) -> scenarios.Params:
    if args.smoke:
        base = SMOKE
    else:
        lo, _, hi = args.delay_ms.partition("-")
        sizes = replace(
            corpus.Sizes(), cold_images=args.cold_images, cold_mb=args.cold_mb, warm_tags=args.warm_tags,
            warm_repos=args.warm_repos, changed=args.changed,
        )  # fmt: skip
        base = scenarios.Params(
            sizes=sizes, reps=args.reps, sample=args.sample, wan_sample=args.wan_sample, min_ms=float(lo),
            max_ms=float(hi or lo), window=args.window,
        )  # fmt: skip
    return replace(
        base, profiles=tuple(args.profiles.split(",")), scenarios=tuple(args.scenarios.split(",")),
        tools=tuple(t for t in args.tools.split(",") if t), before_src=args.before_src,
    )  # fmt: skip


def startup() -> dict[str, float]:
    """Median wall time of a bare interpreter and of importing the CLI module (five tries each)."""

    def median(code: str) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - started)
        return round(statistics.median(times), 4)

    bare = median("pass")
    cli = median("import ecr_transfer.cli")
    plan = median("import ecr_transfer.cli, ecr_transfer.pipeline, ecr_transfer.context")
    return {"python_bare_s": bare, "import_cli_s": cli, "import_run_path_s": plan}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    params = params_from(args)
    workdir = args.workdir or Path(tempfile.gettempdir()) / "ecr-transfer-bench"
    # Per-run files (configs, ledgers, blob-info caches, stderr) of the previous benchmark go.
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    (workdir / "runs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    machine = measure.machine()
    isolate = measure.can_isolate_cache()
    bench = scenarios.Bench(params, workdir, measure.Skopeo(workdir / "runs", isolate))
    bench.log(f"bench: workdir {workdir}; blob-info cache per run via mount namespace: {isolate}")

    sizes = params.sizes
    cold_c = corpus.build_cold(workdir / "layouts", sizes)
    warm_c = corpus.build_warm(workdir / "layouts", sizes)
    changed_c = corpus.build_changed(workdir / "layouts", sizes)
    cold_src = stage.seeded(workdir, cold_c.layout.name, [cold_c])
    warm_src = stage.seeded(workdir, warm_c.layout.name, [warm_c])
    changed_src = stage.seeded(workdir, changed_c.layout.name, [changed_c], base=warm_src)
    warm_dst = stage.seeded(workdir, warm_c.layout.name + "-dest", [], base=warm_src)
    change_dst = stage.seeded(workdir, warm_c.layout.name + "-dest-change", [], base=warm_src)
    bench.log(f"bench: corpus and registries ready in {time.monotonic() - started:.0f}s")

    for profile in params.profiles:
        fronts = stage.Fronts(profile == "wan", params.min_ms, params.max_ms, params.window, params.timeout * 4)
        try:
            if "cold" in params.scenarios:
                scenarios.cold(bench, profile, fronts, cold_src, cold_c)
            if "warm" in params.scenarios:
                scenarios.warm(bench, profile, fronts, warm_src, warm_dst, warm_c)
            if "change" in params.scenarios:
                scenarios.change(bench, profile, fronts, changed_src, change_dst, warm_c, changed_c)
        finally:
            fronts.close()

    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    res = report.Results(bench.runs, {"cold": len(cold_c.tags), "warm": len(warm_c.tags), "change": len(warm_c.tags)})
    found = report.checks(res, params.profiles)
    today = date.today().isoformat()
    doc: dict[str, object] = {
        "date": today,
        "machine": machine,
        "params": {**asdict(params), "smoke": args.smoke},
        "corpus": {
            "cold_images": len(cold_c.tags),
            "cold_unique_bytes": cold_c.unique_bytes,
            "warm_tags": len(warm_c.tags),
            "warm_repositories": len(warm_c.repositories()),
            "changed": changed_c.refs,
        },
        "startup": startup(),
        "wall_seconds": round(time.monotonic() - started, 1),
        "targets": [c.to_dict() for c in found],
        "runs": [r.to_dict() for r in bench.runs],
    }
    text = report.markdown(doc, res, found)
    text += f"\nStart-up: {doc['startup']}; whole benchmark {doc['wall_seconds']} s.\n"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{today}-smoke" if args.smoke else today
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (args.out / f"{stem}.md").write_text(text)
    print(text)
    return 0 if all(c.passed is not False for c in found) else 1


if __name__ == "__main__":
    sys.exit(main())
