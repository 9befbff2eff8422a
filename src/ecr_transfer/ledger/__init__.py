"""Where outcomes are kept. SQLite is the embedded default; DynamoDB serves the cloud."""

from __future__ import annotations

from ecr_transfer.ledger.base import Ledger, LedgerBusyError, open_ledger

__all__ = ["Ledger", "LedgerBusyError", "open_ledger"]
