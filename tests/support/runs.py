"""The CLI as a real subprocess, and read-only looks into its SQLite ledger while it runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def start_cli(
    cfg: Path,
    ledger: Path,
    *args: str,
    delay: float = 0.0,
    env: dict[str, str] | None = None,
    verbose: int = 0,
) -> subprocess.Popen[str]:
    """`ecr-transfer [-v...] run --json`; FAULT_SKOPEO_DELAY slows every skopeo call (see skopeo_wrapper)."""
    argv = [sys.executable, "-m", "ecr_transfer.cli", *(["-" + "v" * verbose] if verbose else [])]
    argv += ["run", "--config", str(cfg), "--ledger", str(ledger), "--json", *args]
    return subprocess.Popen(
        argv,
        env={**os.environ, "FAULT_SKOPEO_DELAY": str(delay), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job would be
    )


def ledger_rows(ledger: Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows of a query, [] while the ledger or its schema does not exist yet."""
    if not ledger.exists():
        return []
    db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, args).fetchall()]
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def count_status(ledger: Path, status: str) -> int:
    return len(ledger_rows(ledger, "SELECT source FROM outcomes WHERE status = ?", status))


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
