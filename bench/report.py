"""Medians, ratios and targets of one benchmark run, as JSON and as a markdown table."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from bench.measure import Run

MB = 1024  # ru_maxrss is in KiB


@dataclass(frozen=True)
class Check:
    name: str
    goal: str
    measured: float | None
    passed: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class Results:
    def __init__(self, runs: list[Run], tags: dict[str, int]) -> None:
        self.runs = runs
        self.tags = tags
        """scenario -> number of tags it covers."""

    def of(self, scenario: str, profile: str, tool: str) -> list[Run]:
        return [r for r in self.runs if (r.scenario, r.profile, r.tool) == (scenario, profile, tool) and r.ok]

    def median(self, scenario: str, profile: str, tool: str) -> float | None:
        runs = self.of(scenario, profile, tool)
        return statistics.median(r.wall * r.scale for r in runs) if runs else None

    def ratio(self, scenario: str, profile: str, num: str, den: str) -> float | None:
        a, b = self.median(scenario, profile, num), self.median(scenario, profile, den)
        return a / b if a is not None and b else None

    def per_tag(self, scenario: str, profile: str, tool: str) -> dict[str, float]:
        """Registry requests per tag by kind, both registries together (median run)."""
        runs = self.of(scenario, profile, tool)
        if not runs:
            return {}
        kinds: dict[str, list[float]] = {}
        for run in runs:
            totals: dict[str, int] = {}
            for side in run.requests.values():
                for kind, n in side.items():
                    totals[kind] = totals.get(kind, 0) + n
            for kind, n in totals.items():
                kinds.setdefault(kind, []).append(n * run.scale / self.tags[scenario])
        return {k: round(statistics.median(v), 3) for k, v in sorted(kinds.items())}


def _at_least(name: str, value: float | None, goal: float, unit: str = "x") -> Check:
    return Check(name, f">= {goal:g}{unit}", value, None if value is None else value >= goal)


def _at_most(name: str, value: float | None, goal: float, unit: str = "x") -> Check:
    return Check(name, f"<= {goal:g}{unit}", value, None if value is None else value <= goal)


def checks(res: Results, profiles: tuple[str, ...]) -> list[Check]:
    out: list[Check] = []
    add = out.append
    inv: Callable[[float | None], float | None] = lambda x: None if x is None else 1 / x  # noqa: E731
    for p in profiles:
        goal = 3 if p == "loopback" else 20
        add(
            _at_least(
                f"warm no-op, {p}: skopeo sync time / ecr-transfer time",
                res.ratio("warm", p, "skopeo sync", "ecr-transfer"),
                goal,
            )
        )
        add(
            _at_most(
                f"warm no-op, {p}: ecr-transfer time / protocol floor",
                res.ratio("warm", p, "ecr-transfer", "protocol floor"),
                1.5,
            )
        )
    for p in profiles:
        per_tag = res.per_tag("warm", p, "ecr-transfer")
        add(
            _at_most(
                f"warm no-op, {p}: registry requests per tag (both registries)",
                sum(per_tag.values()) if per_tag else None,
                2.05,
                "",
            )
        )
        add(
            _at_most(
                f"warm no-op, {p}: manifest GETs per tag", per_tag.get("manifest_get", 0.0) if per_tag else None, 0, ""
            )
        )
        procs = [r.skopeo_processes for r in res.of("warm", p, "ecr-transfer")]
        add(_at_most(f"warm no-op, {p}: skopeo processes", max(procs) if procs else None, 0, ""))
    for p in profiles:
        noop, copy, run = (
            res.median("warm", p, "ecr-transfer"),
            res.median("change", p, "copy changed"),
            res.median("change", p, "ecr-transfer"),
        )
        value = run / (noop + copy) if None not in (noop, copy, run) else None  # type: ignore[operator]
        add(
            _at_most(f"small change, {p}: ecr-transfer time / (no-op time + copy time of the changed images)", value, 2)
        )
    for p in profiles:
        goal = 1.5 if p == "loopback" else 5
        add(
            _at_least(
                f"cold, {p}: skopeo sync time / ecr-transfer time",
                res.ratio("cold", p, "skopeo sync", "ecr-transfer"),
                goal,
            )
        )
    if "loopback" in profiles:
        add(
            _at_least(
                "cold, loopback: ecr-transfer throughput / upload ceiling",
                inv(res.ratio("cold", "loopback", "ecr-transfer", "upload ceiling")),
                0.8,
                "",
            )
        )
    twice = [r.blobs_uploaded_twice for p in profiles for r in res.of("cold", p, "ecr-transfer")]
    add(_at_most("cold: blobs uploaded twice by ecr-transfer (worst run)", max(twice) if twice else None, 0, ""))
    rss = [
        r.maxrss_self_kb / MB
        for s in ("warm", "change")
        for p in profiles
        for r in res.of(s, p, "ecr-transfer")
        if r.maxrss_self_kb
    ]
    add(_at_most("1,000-tag runs: CLI peak RSS, MiB (worst run)", max(rss) if rss else None, 200, " MiB"))
    boto = [r.boto3_imported for r in res.runs if r.tool == "ecr-transfer" and r.boto3_imported is not None]
    add(
        Check(
            "plain-registry runs import boto3",
            "never",
            float(any(boto)) if boto else None,
            (not any(boto)) if boto else None,
        )
    )
    return out  # fmt: skip


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


TOOLS = [
    "ecr-transfer",
    "ecr-transfer (before)",
    "skopeo sync",
    "plugin",
    "protocol floor",
    "upload ceiling",
    "copy changed",
]
SCENARIOS = {"cold": "cold", "warm": "warm no-op", "change": "small change"}


def markdown(doc: dict[str, object], res: Results, found: list[Check]) -> str:
    m = doc["machine"]
    assert isinstance(m, dict)
    lines = [f"# ecr-transfer benchmark, {doc['date']}", ""]
    lines.append(
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['skopeo']}, {m['registry']}, "
        f"{m['python']}, kernel {m['kernel']}; "
        f"load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}."
    )
    lines += ["", f"Parameters: `{doc['params']}`", "", "## Targets", ""]
    lines += ["| target | goal | measured | result |", "| --- | --- | --- | --- |"]
    for c in found:
        verdict = "n/a" if c.passed is None else ("pass" if c.passed else "**FAIL**")
        lines.append(f"| {c.name} | {c.goal} | {_fmt(c.measured)} | {verdict} |")
    lines += ["", "## Median wall time, seconds", ""]
    lines += ["| scenario | profile | " + " | ".join(TOOLS) + " |", "| --- | --- |" + " --- |" * len(TOOLS)]
    for s, label in SCENARIOS.items():
        for p in ("loopback", "wan"):
            cells = []
            for t in TOOLS:
                runs = res.of(s, p, t)
                med = res.median(s, p, t)
                mark = "*" if runs and runs[0].scale != 1 else ""
                cells.append(f"{_fmt(med)}{mark}" if med is not None else "")
            if any(cells):
                lines.append(f"| {label} | {p} | " + " | ".join(cells) + " |")
    lines += ["", "\\* measured on a sample of the tags and scaled to all (these tools are linear in tags).", ""]
    lines += ["## Registry requests per tag, both registries (median run)", ""]
    for s, label in SCENARIOS.items():
        for p in ("loopback", "wan"):
            for t in ("ecr-transfer", "ecr-transfer (before)", "skopeo sync", "plugin"):
                per = res.per_tag(s, p, t)
                if per:
                    kinds = ", ".join(f"{k} {v:g}" for k, v in per.items())
                    lines.append(f"- {label}, {p}, {t}: **{sum(per.values()):.2f}** ({kinds})")
    lines += ["", "## Other measurements (ecr-transfer, worst run)", ""]
    for s, label in SCENARIOS.items():
        for p in ("loopback", "wan"):
            runs = res.of(s, p, "ecr-transfer")
            before = res.of(s, p, "ecr-transfer (before)")
            if before:
                rss = max((r.maxrss_self_kb or 0) for r in before) / MB
                twice = max(r.blobs_uploaded_twice for r in before)
                lines.append(f"- {label}, {p}, before: peak RSS {rss:.0f} MiB, blobs uploaded twice {twice}")
            if runs:
                rss = max((r.maxrss_self_kb or 0) for r in runs) / MB
                procs = max(r.skopeo_processes for r in runs)
                twice = max(r.blobs_uploaded_twice for r in runs)
                lines.append(
                    f"- {label}, {p}: peak RSS {rss:.0f} MiB, skopeo processes {procs}, blobs uploaded twice {twice}"
                )
    for s, label in SCENARIOS.items():
        for p in ("loopback", "wan"):
            for t in ("skopeo sync", "plugin"):
                runs = res.of(s, p, t)
                if runs:
                    twice = max(r.blobs_uploaded_twice for r in runs)
                    procs = max(round(r.skopeo_processes * (r.scale if t == "plugin" else 1)) for r in runs)
                    lines.append(f"- {label}, {p}, {t}: skopeo processes {procs}, blobs uploaded twice {twice}")
    lines += limits(res, int(m.get("nproc") or 2))
    failed = [r for r in res.runs if not r.ok]
    if failed:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {r.scenario} {r.profile} rep {r.rep} {r.tool}: {r.note} {r.stderr_tail[-300:]!r}" for r in failed]
    return "\n".join(lines) + "\n"


def limits(res: Results, cores: int) -> list[str]:
    """What the machine allows for cold copies, from the CPU each run used (see bench/README.md)."""
    out: list[str] = []
    runs = res.of("cold", "loopback", "ecr-transfer")
    sync, ceiling = res.median("cold", "loopback", "skopeo sync"), res.median("cold", "loopback", "upload ceiling")
    if runs and sync and ceiling:
        cpu = statistics.median(r.cpu_tool_s + r.cpu_registries_s for r in runs)
        best = cpu / cores
        out += ["", "## Limits of this machine (cold)", ""]
        out.append(
            f"- loopback: one ecr-transfer cold run needs {cpu:.1f} CPU-seconds (its skopeo processes and both "
            f"registries, median); with all {cores} cores and nothing else running it cannot take less than "
            f"{best:.1f} s. The targets ask for at most {sync / 1.5:.1f} s (skopeo sync / 1.5) and "
            f"{ceiling / 0.8:.1f} s (upload ceiling / 0.8)."
        )
        sync_cpu = statistics.median(
            r.cpu_tool_s + r.cpu_registries_s for r in res.of("cold", "loopback", "skopeo sync")
        )
        out.append(
            f"- loopback: skopeo sync itself needs {sync_cpu:.1f} CPU-seconds for the same bytes: every byte is read "
            "by the source registry, hashed and forwarded by skopeo, hashed and written by the destination registry, "
            "on the same cores; the ceiling run only has the last step."
        )
    plugin, wan_sync = res.median("cold", "wan", "plugin"), res.median("cold", "wan", "skopeo sync")
    if plugin and wan_sync:
        out.append(
            f"- wan: the plugin (10 skopeo copies at a time, no ordering, duplicate uploads allowed) takes "
            f"{plugin:.1f} s; 5x faster than skopeo sync would be {wan_sync / 5:.1f} s."
        )
    return out
