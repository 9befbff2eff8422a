from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ecr_transfer.ledger import LedgerBusyError, open_ledger
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.model import Outcome


def _outcome(run: str, source: str, status: str = "copied", started: str = "2026-01-01T00:00:00") -> Outcome:
    return Outcome(
        run_id=run,
        source=source,
        target="dst/" + source,
        status=status,  # type: ignore[arg-type]
        source_digest="sha256:a",
        target_digest="sha256:a",
        attempts=1,
        started_at=started,
        ended_at=started,
    )


def test_record_is_idempotent_and_latest_tracks_newest(tmp_path: Path) -> None:
    ledger = open_ledger(str(tmp_path / "l.db"))
    ledger.start_run("r1", "2026-01-01T00:00:00")
    ledger.record(_outcome("r1", "a:1", "in_progress"))
    ledger.record(_outcome("r1", "a:1", "copied"))
    ledger.record(_outcome("r1", "a:1", "copied"))
    summary = ledger.finish_run("r1", "2026-01-01T00:01:00")
    assert [o.status for o in ledger.outcomes("r1")] == ["copied"]
    assert (summary.planned, summary.copied, summary.state) == (1, 1, "finished")

    ledger.start_run("r2", "2026-01-02T00:00:00")
    ledger.record(_outcome("r2", "a:1", "skipped", "2026-01-02T00:00:00"))
    # A late write from the older run must not overwrite the newer latest outcome.
    ledger.record(_outcome("r1", "a:1", "failed", "2026-01-01T00:00:00"))
    ledger.finish_run("r2", "2026-01-02T00:01:00")
    assert [(o.run_id, o.status) for o in ledger.latest()] == [("r2", "skipped")]
    assert [r.run_id for r in ledger.runs()] == ["r2", "r1"]
    ledger.close()


def test_second_live_run_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        first = SQLiteLedger(path)
        first.start_run("r1", "2026-01-01T00:00:00")
        # Pretend the lease belongs to another live process on this host.
        first._db.execute("UPDATE lease SET pid = ?", (holder.pid,))
        second = SQLiteLedger(path)
        with pytest.raises(LedgerBusyError) as info:
            second.start_run("r2", "2026-01-01T00:00:05")
        assert f"ledger {path} is in use by run r1 (pid {holder.pid}" in str(info.value)
        assert "wait for it to finish or use another --ledger" in str(info.value)
    finally:
        holder.kill()
        holder.wait()


def test_dead_run_is_marked_interrupted_and_lease_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    first = SQLiteLedger(path)
    first.start_run("r1", "2026-01-01T00:00:00")
    first.record(_outcome("r1", "a:1", "copied"))
    first.record(_outcome("r1", "b:1", "in_progress"))
    first._db.execute("UPDATE lease SET pid = ?", (dead.pid,))
    first.close()

    second = SQLiteLedger(path)
    recovered = second.start_run("r2", "2026-01-01T01:00:00")
    assert [r.run_id for r in recovered] == ["r1"]
    assert recovered[0].state == "interrupted"
    assert f"process {dead.pid} ended before the run finished" in (recovered[0].note or "")
    statuses = {o.source: (o.status, o.error) for o in second.outcomes("r1")}
    assert statuses["a:1"] == ("copied", None)
    assert statuses["b:1"][0] == "interrupted"
    assert "the next run re-plans it" in (statuses["b:1"][1] or "")
