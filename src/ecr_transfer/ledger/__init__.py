"""Where outcomes are kept. SQLite is the embedded default; DynamoDB serves the cloud."""

from __future__ import annotations

from ecr_transfer.ledger.base import Ledger, LedgerBusyError
from ecr_transfer.ledger.url import DEFAULT_LEDGER, ledger_exists, open_ledger

__all__ = ["DEFAULT_LEDGER", "Ledger", "LedgerBusyError", "ledger_exists", "open_ledger"]
