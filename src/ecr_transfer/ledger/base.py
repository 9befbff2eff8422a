"""The ledger interface every backend implements (ledger.url picks one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ecr_transfer.model import Outcome, RunSummary


class LedgerBusyError(Exception):
    """Another live run holds the ledger."""


class Ledger(Protocol):
    """Latest outcome per image (keyed by source reference) plus per-run history.

    `record` is idempotent on (run_id, source): a retried writer never duplicates an outcome.
    """

    def start_run(self, run_id: str, started_at: str, holder: str = "") -> list[RunSummary]:
        """Open a run; take the ledger lease. Returns earlier runs found dead (marked interrupted).

        Raises LedgerBusyError when a live run holds the lease.
        """
        ...

    def busy(self) -> str | None:
        """Why a run cannot start now (a live run holds the lease), or None.

        Asked before planning, which can take minutes: start_run still decides, atomically.
        """
        ...

    def record(self, outcome: Outcome) -> None: ...

    def record_many(self, outcomes: Sequence[Outcome]) -> None:
        """`record` for each, as fast as the backend allows (one transaction, parallel writes)."""
        ...

    def finish_run(self, run_id: str, ended_at: str, state: str = "finished") -> RunSummary: ...

    def latest(self) -> list[Outcome]: ...

    def outcomes(self, run_id: str) -> list[Outcome]: ...

    def runs(self, limit: int = 20) -> list[RunSummary]: ...

    def close(self) -> None: ...
