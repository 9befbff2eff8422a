"""The second round's markdown: medians per scenario and tool, ratios within the run, CPU per image."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from bench.measure import Run

ORDER = ("ecr-transfer", "ecr-transfer (before)", "regsync", "crane", "skopeo sync", "protocol floor")
TITLES = {
    "noop-300": "no-op, 300 tags in 10 repositories",
    "noop-3000": "no-op, 3,000 tags in one repository",
    "noop-1000": "no-op, 1,000 tags in 10 repositories",
    "noop-10000": "no-op, 10,000 tags in 20 repositories",
    "small": "cold, 200 small images (distinct 4 KB layers), one repository",
    "wan": "cold WAN (20-25 ms each way), 12 images of 5 MB sharing 2 base layers, 4 repositories",
    "xborder": "cross-border (destination 150-200 ms RTT, one 40 Mbit/s link each way), 12 images in 6 "
    "repositories sharing an 8 MB OS layer and two 16 MB runtime layers",
}


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _groups(runs: Sequence[Run]) -> dict[tuple[str, str], dict[str, list[Run]]]:
    out: dict[tuple[str, str], dict[str, list[Run]]] = {}
    for r in runs:
        out.setdefault((r.scenario, r.profile), {}).setdefault(r.tool, []).append(r)
    return out


def _fmt(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}{unit}"


def _requests_per_tag(run: Run, tags: int) -> float:
    return sum(n for side in run.requests.values() for n in side.values()) / max(1, tags)


def markdown(doc: Mapping[str, object], runs: Sequence[Run]) -> str:
    machine = doc["machine"]
    corpus = doc["corpus"]
    assert isinstance(machine, dict) and isinstance(corpus, dict)
    lines = [
        f"# ecr-transfer benchmark, second round (issue 15), {doc['date']}",
        "",
        f"Machine: {machine['nproc']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, {machine['skopeo']}, "
        f"{machine['registry']}, {machine['python']}; load average at start {machine['loadavg_start']}, "
        f"at end {machine['loadavg_end']} (the machine is shared with other engineers' test runs: read the "
        f"ratios, which compare tools run alternately in the same minutes, not the absolute times).",
        "",
        f"Peers on PATH: {doc['peers'] or 'none'}; not found (so not measured): {doc['missing'] or 'none'}. "
        f"Repetitions: {doc['reps']}, medians; whole run {doc['wall_seconds']} s.",
        "",
    ]
    groups = _groups(runs)
    for (scenario, profile), by_tool in groups.items():
        tags = int(corpus[scenario]["tags"])
        lines += [f"## {TITLES.get(scenario, scenario)} — {profile}", ""]
        lines += [
            "| tool | median wall s | runs (s) | x ecr-transfer's time | CPU s (tool + children) "
            "| CPU ms per image | requests per tag |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        ours = _median([r.wall for r in by_tool.get("ecr-transfer", []) if r.ok])
        for tool in sorted(by_tool, key=lambda t: ORDER.index(t) if t in ORDER else 99):
            ok = [r for r in by_tool[tool] if r.ok]
            wall = _median([r.wall for r in ok])
            cpu = _median([r.cpu_tool_s for r in ok])
            ratio = wall / ours if wall is not None and ours else None
            failed = len(by_tool[tool]) - len(ok)
            bad = next((r for r in by_tool[tool] if not r.ok), None) or by_tool[tool][0]
            each = ", ".join(f"{r.wall:.2f}" if r.ok else "failed" for r in by_tool[tool])
            reqs = _median([_requests_per_tag(r, tags) for r in ok])
            lines.append(
                f"| {tool} | {_fmt(wall)} | {each} | {_fmt(ratio, 'x')} | {_fmt(cpu)} | "
                f"{_fmt(None if cpu is None else cpu * 1000 / tags, '', 1)} | {_fmt(reqs)} |"
                + (f" {failed} failed: {(bad.note or bad.stderr_tail[-200:])!r}" if failed else "")
            )
        lines.append("")
        lines += _uploads(by_tool)
    return "\n".join(lines) + "\n"


def _uploads(by_tool: Mapping[str, Sequence[Run]]) -> list[str]:
    """Cold runs: completed uploads per digest at the destination, and the bytes each proxy carried."""
    if not any(r.uploads for runs in by_tool.values() for r in runs):
        return []
    out = [
        "| tool | blob uploads (distinct digests) | digests uploaded more than once, most uploads of one | "
        "MB uploaded (sizes of completed uploads) | MB sent to the destination / read from the source (proxies) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for tool in sorted(by_tool, key=lambda t: ORDER.index(t) if t in ORDER else 99):
        runs = [r for r in by_tool[tool] if r.ok and r.uploads]
        if not runs:
            continue
        each = "; ".join(f"{sum(r.uploads.values())} ({len(r.uploads)})" for r in runs)
        twice = "; ".join(f"{r.blobs_uploaded_twice}, {max(r.uploads.values())}" for r in runs)
        mb = "; ".join(f"{r.uploaded_bytes / 1e6:.1f}" for r in runs)
        link = "; ".join(
            f"{r.link_bytes.get('destination_up', 0) / 1e6:.1f} / {r.link_bytes.get('source_down', 0) / 1e6:.1f}"
            for r in runs
        )
        out.append(f"| {tool} | {each} | {twice} | {mb} | {link} |")
    return [*out, ""]
