"""The second-round harness (bench/peers.py, bench/report2.py): how each peer is run, and the table.

regsync and crane are not part of this project, so these tests put stand-in scripts named like
them on PATH that record their arguments and exit 0: what is checked is what the benchmark asks
of them (configuration, flags, one crane per repository) and whether a missing peer is said.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import peers, report2
from bench.measure import Run
from bench.tools import Target

STAND_IN = """#!/bin/sh
echo "$@" >> "{log}"
if [ "$1" = once ]; then cp "$3" "{log}.config"; fi
"""


@pytest.fixture
def stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in peers.PEERS:
        script = bin_dir / name
        script.write_text(STAND_IN.format(log=tmp_path / f"{name}.log"))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return tmp_path


def _target(tmp_path: Path, ca: Path | None = None) -> Target:
    repos = {"r2/a": ["v1", "v2"], "r2/b": ["v1"]}
    return Target("127.0.0.1:5001", "127.0.0.1:5002", repos, tmp_path, concurrency=10, ca=ca)


def test_missing_peers_are_reported_not_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert peers.found() == {}


def test_regsync_gets_one_repository_entry_per_repository_at_the_same_concurrency(stand_ins: Path) -> None:
    run = peers.regsync(_target(stand_ins), tag="t")
    assert run.ok and run.tool == "regsync"
    config = json.loads((stand_ins / "regsync.log.config").read_text())
    assert config["defaults"] == {"parallel": 10}
    assert config["sync"] == [
        {"source": "127.0.0.1:5001/r2/a", "target": "127.0.0.1:5002/r2/a", "type": "repository"},
        {"source": "127.0.0.1:5001/r2/b", "target": "127.0.0.1:5002/r2/b", "type": "repository"},
    ]
    assert {c["tls"] for c in config["creds"]} == {"disabled"}


def test_crane_runs_once_per_repository_with_all_tags_and_trusts_the_ca_in_tls(stand_ins: Path) -> None:
    peers.crane(_target(stand_ins), tag="plain")
    plain = sorted((stand_ins / "crane.log").read_text().splitlines())
    assert plain == [
        "copy --all-tags --jobs 10 --insecure 127.0.0.1:5001/r2/a 127.0.0.1:5002/r2/a",
        "copy --all-tags --jobs 10 --insecure 127.0.0.1:5001/r2/b 127.0.0.1:5002/r2/b",
    ]
    (stand_ins / "crane.log").unlink()
    ca = stand_ins / "ca.crt"
    ca.write_text("PEM")
    peers.crane(_target(stand_ins, ca), tag="tls")
    assert all("--insecure" not in line for line in (stand_ins / "crane.log").read_text().splitlines())


def test_report_gives_medians_ratios_to_ours_and_cpu_per_image() -> None:
    def run(tool: str, wall: float, cpu: float) -> Run:
        return Run(tool, wall, 0, cpu_tool_s=cpu, scenario="small", profile="loopback", requests={"source": {"x": 400}})

    runs = [run("ecr-transfer", 10.0, 2.0), run("ecr-transfer", 12.0, 2.0), run("regsync", 5.0, 0.2)]
    doc = {
        "date": "2026-12-01",
        "machine": {"nproc": 2, "cpu": "c", "memory_gib": 1, "skopeo": "s", "registry": "r", "python": "p",
                    "loadavg_start": [1], "loadavg_end": [2]},
        "peers": {"regsync": "v"}, "missing": ["crane"], "reps": 2, "wall_seconds": 1,
        "corpus": {"small": {"tags": 200, "repositories": 1}},
    }  # fmt: skip
    text = report2.markdown(doc, runs)
    assert "not found (so not measured): ['crane']" in text
    assert "| ecr-transfer | 11.00 | 10.00, 12.00 | 1.00x | 2.00 | 10.0 | 2.00 |" in text
    assert "| regsync | 5.00 | 5.00 | 0.45x | 0.20 | 1.0 | 2.00 |" in text
