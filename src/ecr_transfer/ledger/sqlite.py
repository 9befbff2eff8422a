"""The embedded ledger: one SQLite file, safe for concurrent writers and for crashes.

A lease row makes a second run on the same ledger fail fast with a clear message instead of
copying the same images at the same time; a lease left by a killed run is taken over and that
run's unfinished images are marked `interrupted` with an explanation. A killed run is known
dead at once when it ran on this host (its pid is gone); from another host (a container that
was killed, with the ledger on a shared volume) only when its lease expires:
ECR_TRANSFER_LEASE_SECONDS (default 900) after the last renewal by its heartbeat thread.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ecr_transfer import envvars
from ecr_transfer.ledger.base import LedgerBusyError
from ecr_transfer.model import Outcome, RunSummary, status_counts
from ecr_transfer.processes import pid_alive

_OUTCOME_COLUMNS = (
    "run_id, source, target, status, source_digest, target_digest, attempts, error, started_at, ended_at, reason"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, state TEXT NOT NULL,
    holder TEXT, planned INTEGER DEFAULT 0, copied INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0,
    failed INTEGER DEFAULT 0, note TEXT
);
CREATE TABLE IF NOT EXISTS outcomes (
    {_OUTCOME_COLUMNS.replace(", ", " TEXT, ")} TEXT,
    PRIMARY KEY (run_id, source)
);
CREATE TABLE IF NOT EXISTS latest (
    {_OUTCOME_COLUMNS.replace(", ", " TEXT, ")} TEXT,
    PRIMARY KEY (source)
);
CREATE TABLE IF NOT EXISTS lease (
    id INTEGER PRIMARY KEY CHECK (id = 1), run_id TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at TEXT NOT NULL, expires_at REAL
);
"""


DEFAULT_LEASE_SECONDS = 900.0


_COLUMNS = tuple(_OUTCOME_COLUMNS.split(", "))
_MARKS = ", ".join("?" * len(_COLUMNS))
_INSERT_OUTCOME = f"INSERT OR REPLACE INTO outcomes ({_OUTCOME_COLUMNS}) VALUES ({_MARKS})"
# `latest` never goes back in time: an older run's late write does not win.
_UPSERT_LATEST = (
    f"INSERT INTO latest ({_OUTCOME_COLUMNS}) VALUES ({_MARKS}) ON CONFLICT(source) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "source")
    + " WHERE excluded.started_at >= latest.started_at OR latest.run_id = excluded.run_id"
)


def _outcome(row: sqlite3.Row) -> Outcome:
    data: dict[str, Any] = dict(row)
    data["attempts"] = int(data["attempts"] or 0)
    return Outcome.from_dict(data)


class SQLiteLedger:
    def __init__(self, path: str | Path, *, lease_seconds: float | None = None) -> None:
        self.path = str(path)
        self.lease_seconds = lease_seconds or float(
            os.environ.get(envvars.LEDGER_LEASE_SECONDS) or DEFAULT_LEASE_SECONDS
        )
        self._beat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection guarded by a lock: the worker pool records from several threads.
        self._db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            if "expires_at" not in {row[1] for row in self._db.execute("PRAGMA table_info(lease)")}:
                self._db.execute("ALTER TABLE lease ADD COLUMN expires_at REAL")  # ledgers made before leases expired
        self._run_id: str | None = None

    # -- runs and the lease ---------------------------------------------------------------
    def start_run(self, run_id: str, started_at: str, holder: str = "") -> list[RunSummary]:
        host, pid = socket.gethostname(), os.getpid()
        recovered: list[RunSummary] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                lease = self._db.execute("SELECT * FROM lease WHERE id = 1").fetchone()
                if lease is not None:
                    expired = lease["expires_at"] is not None and lease["expires_at"] < time.time()
                    here = lease["host"] == host
                    held = self._held_by_other(lease)
                    if held:
                        raise LedgerBusyError(held)
                    why = (
                        f"process {lease['pid']} ended before the run finished"
                        if here and not expired
                        else f"its lease expired (process {lease['pid']} on {lease['host']} stopped renewing it)"
                    )
                    recovered.append(self._interrupt(lease["run_id"], int(lease["pid"]), started_at, why))
                self._db.execute(
                    "INSERT OR REPLACE INTO lease (id, run_id, host, pid, started_at, expires_at) "
                    "VALUES (1, ?, ?, ?, ?, ?)",
                    (run_id, host, pid, started_at, time.time() + self.lease_seconds),
                )
                self._db.execute(
                    "INSERT OR REPLACE INTO runs (run_id, started_at, state, holder) VALUES (?, ?, 'running', ?)",
                    (run_id, started_at, holder or f"{host}:{pid}"),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._run_id = run_id
        self._start_heartbeat(run_id)
        return recovered

    def _held_by_other(self, lease: sqlite3.Row | None) -> str | None:
        if lease is None:
            return None
        expired = lease["expires_at"] is not None and lease["expires_at"] < time.time()
        alive = not expired and (lease["host"] != socket.gethostname() or pid_alive(int(lease["pid"])))
        # Host and pid: two containers on one ledger volume are both pid 1.
        if not alive or (lease["host"], lease["pid"]) == (socket.gethostname(), os.getpid()):
            return None
        return (
            f"ledger {self.path} is in use by run {lease['run_id']} (pid {lease['pid']} on "
            f"{lease['host']}, started {lease['started_at']}); wait for it to finish or use another --ledger"
        )

    def busy(self) -> str | None:
        with self._lock:
            return self._held_by_other(self._db.execute("SELECT * FROM lease WHERE id = 1").fetchone())

    def _start_heartbeat(self, run_id: str) -> None:
        self._stop_heartbeat()
        self._beat_stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat, args=(run_id, self._beat_stop), daemon=True, name="ledger-lease"
        )
        self._heartbeat.start()

    def _stop_heartbeat(self) -> None:
        self._beat_stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        self._heartbeat = None

    def _beat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                with self._lock:
                    self._db.execute(
                        "UPDATE lease SET expires_at = ? WHERE run_id = ?", (time.time() + self.lease_seconds, run_id)
                    )
            except sqlite3.Error:
                continue  # busy or closing: the lease has slack, the next beat tries again

    def _interrupt(self, run_id: str, pid: int, at: str, why: str | None = None) -> RunSummary:
        why = why or f"process {pid} ended before the run finished"
        note = f"interrupted: {why}; detected at {at}"
        error = f"the run was interrupted ({why}) while this image was being copied; the next run re-plans it"
        self._db.execute(
            "UPDATE outcomes SET status = 'interrupted', error = ?, ended_at = ? WHERE run_id = ? "
            "AND status = 'in_progress'",
            (error, at, run_id),
        )
        self._db.execute(
            "UPDATE latest SET status = 'interrupted', error = ?, ended_at = ? WHERE run_id = ? "
            "AND status = 'in_progress'",
            (error, at, run_id),
        )
        self._finish_locked(run_id, at, "interrupted", note)
        row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return (
            RunSummary.from_dict(dict(row))
            if row
            else RunSummary(run_id=run_id, started_at=at, ended_at=at, state="interrupted", note=note)
        )

    def _finish_locked(self, run_id: str, ended_at: str, state: str, note: str | None = None) -> None:
        rows = self._db.execute(
            "SELECT status, COUNT(*) FROM outcomes WHERE run_id = ? GROUP BY status", (run_id,)
        ).fetchall()
        c = status_counts({status: n for status, n in rows})
        self._db.execute(
            "UPDATE runs SET ended_at = ?, state = ?, planned = ?, copied = ?, skipped = ?, failed = ?, "
            "note = COALESCE(?, note) WHERE run_id = ?",
            (ended_at, state, c["planned"], c["copied"], c["skipped"], c["failed"], note, run_id),
        )

    def finish_run(self, run_id: str, ended_at: str, state: str = "finished") -> RunSummary:
        self._stop_heartbeat()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._finish_locked(run_id, ended_at, state)
            self._db.execute("DELETE FROM lease WHERE run_id = ?", (run_id,))
            self._db.execute("COMMIT")
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return RunSummary.from_dict(dict(row))

    # -- outcomes -------------------------------------------------------------------------
    def record(self, outcome: Outcome) -> None:
        """Upsert on (run_id, source): recording the same outcome twice leaves one row."""
        self.record_many([outcome])

    def record_many(self, outcomes: Sequence[Outcome]) -> None:
        """Several outcomes in one transaction: a no-op run's thousand skips cost one commit, not a thousand."""
        rows = [tuple(getattr(o, c) for c in _COLUMNS) for o in outcomes]
        if not rows:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(_INSERT_OUTCOME, rows)
            self._db.executemany(_UPSERT_LATEST, rows)
            self._db.execute("COMMIT")

    def latest(self) -> list[Outcome]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_OUTCOME_COLUMNS} FROM latest ORDER BY source").fetchall()
        return [_outcome(r) for r in rows]

    def outcomes(self, run_id: str) -> list[Outcome]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_OUTCOME_COLUMNS} FROM outcomes WHERE run_id = ? ORDER BY source", (run_id,)
            ).fetchall()
        return [_outcome(r) for r in rows]

    def runs(self, limit: int = 20) -> list[RunSummary]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [RunSummary.from_dict(dict(r)) for r in rows]

    def close(self) -> None:
        self._stop_heartbeat()
        with self._lock:
            self._db.close()
