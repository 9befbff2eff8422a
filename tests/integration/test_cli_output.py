"""What the CLI prints, as a person and a script see it (issue 12, items 8-10 and 15).

The CLI runs as a real subprocess where stderr matters: inside pytest, logging's basicConfig
finds pytest's capture handler and prints nothing, which is how the noise went unnoticed.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from ecr_transfer.context import build_context
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.pipeline import run
from ecr_transfer.report import TerminalProgress, human_bytes
from ecr_transfer.settings import from_mapping
from integration.ecr_support import MotoServer
from support.runs import count_status, wait_for
from support.skopeo_wrapper import Skopeo

from .conftest import Transfer

pytest_plugins = ["integration.ecr_fixtures"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecr_transfer.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_an_ecr_plan_prints_no_botocore_info_lines(aws: MotoServer, transfer: Transfer) -> None:
    transfer.seed({"team/app:1": "single"})
    cfg = transfer.write_config(
        sourceType="Public",
        srcImageList=f"{transfer.src.host}/team/app:1",
        insecureRegistries=[transfer.src.host],
        destType="Amazon_ECR",
        destRegion="us-east-1",
    )

    proc = cli("plan", "--config", str(cfg))

    assert proc.returncode == 0, proc.stderr
    assert "team/app:1" in proc.stdout
    # "Found credentials in environment variables." (botocore.credentials, INFO) used to appear.
    assert "botocore" not in proc.stderr and "Found credentials" not in proc.stderr, proc.stderr


def test_a_no_op_run_says_so_in_one_line_unless_verbose(transfer: Transfer) -> None:
    tags = [f"v{n}" for n in range(12)]
    transfer.seed({f"team/app:{t}": "single" for t in tags})
    images = "\n".join(f"{transfer.src.host}/team/app:{t}" for t in tags)
    cfg = transfer.config(images)
    ledger = str(transfer.tmp_path / "l.db")
    assert cli("run", "--config", str(cfg), "--ledger", ledger).returncode == 0

    quiet = cli("run", "--config", str(cfg), "--ledger", ledger)
    verbose = cli("-v", "run", "--config", str(cfg), "--ledger", ledger)

    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines()
    assert lines[0] == "12 unchanged (the destination has the same digest); -v lists them"
    assert lines[1].startswith("run ") and " 12 planned, 0 copied, 12 skipped, 0 failed in " in lines[1]
    assert len(lines) == 2
    assert sum(1 for line in verbose.stdout.splitlines() if line.startswith("skipped ")) == 12


def test_plan_fails_when_lookups_fail_and_reads_the_ledger_as_run_does(transfer: Transfer) -> None:
    transfer.seed({"team/multi:1": "multi"})
    s = transfer.src.host
    # includeUntagged: false copies one platform: only the ledger says that destination is current.
    cfg = transfer.config(f"{s}/team/multi:1", includeUntagged=False)
    ledger = str(transfer.tmp_path / "l.db")
    assert cli("run", "--config", str(cfg), "--ledger", ledger).returncode == 0

    without = cli("plan", "--config", str(cfg), "--json", "--ledger", str(transfer.tmp_path / "other.db"))
    planned = cli("plan", "--config", str(cfg), "--json", "--ledger", ledger)
    broken = transfer.config(f"{s}/team/gone:1\n{s}/team/nope:1")
    failing = cli("plan", "--config", str(broken))

    assert without.returncode == 2 and "no ledger at" in without.stderr  # named but missing
    assert not (transfer.tmp_path / "other.db").exists()
    assert planned.returncode == 0, planned.stderr
    (item,) = json.loads(planned.stdout)["items"]
    assert (item["status"], item["reason"]) == ("skip", "destination has the platform copied from this source digest")
    assert failing.returncode == 1, failing.stdout
    assert failing.stdout.count("source lookup failed: not found at the source") == 2


def test_status_refuses_a_mistyped_or_foreign_ledger_and_dates_each_outcome(transfer: Transfer) -> None:
    transfer.seed({"team/app:1": "single"})
    cfg = transfer.config(f"{transfer.src.host}/team/app:1")
    ledger = transfer.tmp_path / "l.db"
    done = cli("run", "--config", str(cfg), "--ledger", str(ledger), "--json")
    run_id = json.loads(done.stdout)["run_id"]
    (transfer.tmp_path / "notes.txt").write_text("not a database at all, just some text\n" * 100)

    typo = cli("status", "--ledger", str(transfer.tmp_path / "l.bd"))
    foreign = cli("status", "--ledger", str(transfer.tmp_path / "notes.txt"))
    latest = cli("status", "--ledger", str(ledger))

    assert typo.returncode == 2 and not (transfer.tmp_path / "l.bd").exists()
    assert typo.stderr.startswith(f"error: --ledger: no ledger at {transfer.tmp_path}/l.bd (a run creates it;")
    assert foreign.returncode == 2 and "Traceback" not in foreign.stderr
    assert foreign.stderr.startswith(f"error: --ledger: {transfer.tmp_path}/notes.txt is not an ecr-transfer ledger")
    header, _, row = latest.stdout.splitlines()
    assert header.split() == ["STATUS", "SOURCE", "TARGET", "DIGEST", "TRIES", "RUN", "AT", "DETAIL"]
    assert row.split()[:1] == ["copied"] and run_id in row.split()


def _slow_run(cfg: Path, ledger: Path, *extra: str) -> subprocess.Popen[str]:
    """A human-mode run whose every skopeo call first sleeps a second (the skopeo fixture's wrapper)."""
    return subprocess.Popen(
        [sys.executable, "-m", "ecr_transfer.cli", "run", "--config", str(cfg), "--ledger", str(ledger), *extra],
        env={**os.environ, "FAULT_SKOPEO_DELAY": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_status_runs_shows_a_running_run_s_progress_and_ctrl_c_still_summarises(
    transfer: Transfer, skopeo: Skopeo
) -> None:
    tags = [f"v{n}" for n in range(8)]
    transfer.seed({f"team/app:{t}": "app-a" for t in tags})
    images = "\n".join(f"{transfer.src.host}/team/app:{t}" for t in tags)
    cfg = transfer.config(images, concurrency=2)
    ledger = transfer.tmp_path / "l.db"
    proc = _slow_run(cfg, ledger)
    try:
        assert wait_for(lambda: count_status(ledger, "copied") >= 2, timeout=60)
        runs = cli("status", "--runs", "--ledger", str(ledger), "--json")
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()

    (running,) = json.loads(runs.stdout)["runs"]
    assert running["state"] == "running" and running["copied"] >= 2  # it used to read 0/0
    assert running["planned"] >= running["copied"] and running["note"].endswith("copying now")
    assert proc.returncode == 130
    # Interrupted images read as such (not FAILED), and the summary still comes.
    assert "FAILED" not in err and "INTERRUPTED " in err
    summary = out.splitlines()[-1]
    assert summary.startswith("run ") and summary.endswith("(interrupted)") and " interrupted in " in summary


def test_a_busy_ledger_is_reported_before_planning(transfer: Transfer) -> None:
    transfer.seed({"team/app:1": "single"})
    cfg = transfer.config(f"{transfer.src.host}/team/app:1")
    ledger = SQLiteLedger(transfer.tmp_path / "l.db")
    ledger.start_run("20261201T000000Z-holder", "2026-12-01T00:00:00+00:00")  # this test process holds it
    transfer.src.reset_requests()
    try:
        proc = cli("run", "--config", str(cfg), "--ledger", str(transfer.tmp_path / "l.db"), "--json")
    finally:
        ledger.finish_run("20261201T000000Z-holder", "2026-12-01T00:00:01+00:00")
        ledger.close()

    assert proc.returncode == 2
    assert "is in use by run 20261201T000000Z-holder" in json.loads(proc.stdout)["problems"][0]
    assert transfer.src.requests() == []  # not one lookup: the plan never started


def test_help_is_written_for_users() -> None:
    top = cli("--help")
    plan = cli("plan", "--help")

    assert "Thin glue" not in top.stdout and "Exit codes: 0 nothing failed" in " ".join(top.stdout.split())
    options = {"--config": "settings YAML", "--ledger": "read only", "--force": "plan to copy", "--json": "JSON"}
    text = " ".join(plan.stdout.split())
    for option, words in options.items():
        assert re.search(rf"{option}( \w+)? .*{words}", text), (option, plan.stdout)


class FakeTerminal(io.StringIO):
    """What a terminal would show: TerminalProgress draws only on a tty."""

    def isatty(self) -> bool:
        return True


def test_the_progress_line_keeps_time_moving_and_counts_landed_bytes(transfer: Transfer, skopeo: Skopeo) -> None:
    digest = transfer.seed({"team/app:1": "single"})["team/app:1"]
    manifest = json.loads(transfer.src.get_manifest("team/app", digest) or b"{}")
    size = sum(blob["size"] for blob in [manifest["config"], *manifest["layers"]])
    transfer.monkeypatch.setenv("FAULT_SKOPEO_DELAY", "1.5")  # one long copy: nothing finishes for 1.5 s
    settings = from_mapping(
        {
            "sourceType": "Public",
            "srcImageList": f"{transfer.src.host}/team/app:1",
            "destType": "Registry",
            "destRegistry": transfer.dst.host,
            "insecureRegistries": [transfer.src.host, transfer.dst.host],
        }
    )
    screen = FakeTerminal()
    context = build_context(settings)
    ledger = SQLiteLedger(transfer.tmp_path / "l.db")
    try:
        result = run(context, ledger, progress=TerminalProgress(screen, tick=0.1))
    finally:
        context.close()
        ledger.close()

    assert [o.status for o in result.outcomes] == ["copied"]
    frames = [f.removesuffix("\033[K").strip() for f in screen.getvalue().split("\r") if f.startswith("[")]
    during = [f for f in frames if f.startswith("[0/1]")]
    # The line moved while the copy ran (it used to stand still until the image ended)...
    assert len({f.rsplit(" ", 1)[-1] for f in during}) >= 5, during
    # ...and ends with every byte the copy brought: the config and the layers of the image.
    assert frames[-1].startswith("[1/1] copied 1") and f"  {human_bytes(size)}  " in frames[-1], frames[-1]
