"""`python -m bench --smoke`: the whole harness end to end on tiny sizes (well under a minute)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_smoke_runs_every_tool_and_writes_the_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--workdir", str(tmp_path / "work"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    # Exit 1 means "a target missed", which tiny sizes are allowed to do; anything else is a crash.
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    [result] = out.glob("*-smoke.json")
    doc = json.loads(result.read_text())
    runs = doc["runs"]
    assert runs and all(r["ok"] for r in runs), [r for r in runs if not r["ok"]]
    seen = {(r["scenario"], r["profile"], r["tool"]) for r in runs}
    for profile in ("loopback", "wan"):
        for tool in ("ecr-transfer", "skopeo sync", "plugin", "protocol floor"):
            assert ("warm", profile, tool) in seen
        assert ("cold", profile, "ecr-transfer") in seen
        assert ("change", profile, "copy changed") in seen
    assert ("cold", "loopback", "upload ceiling") in seen
    noop = [r for r in runs if (r["scenario"], r["tool"]) == ("warm", "ecr-transfer")]
    assert all(r["skopeo_processes"] == 0 and not r["boto3_imported"] for r in noop)
    assert all(r["requests"]["source"].get("manifest_head") == doc["corpus"]["warm_tags"] for r in noop)
    cold = [r for r in runs if (r["scenario"], r["tool"]) == ("cold", "ecr-transfer")]
    assert all(r["blobs_uploaded_twice"] == 0 for r in cold)
    names = {t["name"] for t in doc["targets"]}
    assert any(name.startswith("warm no-op, wan") for name in names)
    assert (out / result.name.replace(".json", ".md")).read_text().startswith("# ecr-transfer benchmark")
