"""The ledger URL picks the backend: a SQLite file on one machine, a DynamoDB table in the cloud.

Apart from base.py, so the backends (which raise base's LedgerBusyError) do not import the
module that imports them. DynamoDB is imported only when named: it brings boto3.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ecr_transfer import envvars
from ecr_transfer.errors import ConfigError
from ecr_transfer.ledger.base import Ledger

DEFAULT_LEDGER = "ecr-transfer.db"
_TABLES = {"runs", "outcomes", "latest"}


def ledger_exists(url: str | None) -> bool:
    """Whether there is a ledger to read (a DynamoDB table is assumed to be there)."""
    url = url or DEFAULT_LEDGER
    return url.startswith("dynamodb://") or Path(url.removeprefix("sqlite://")).exists()


def _check_sqlite(path: str) -> None:
    """A ledger to read must exist and be one: never a new empty file, never a traceback."""
    where = f"check --ledger or ${envvars.LEDGER}"
    if not Path(path).exists():
        raise ConfigError(f"no ledger at {path} (a run creates it; {where})", source="--ledger")
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is not an ecr-transfer ledger ({exc}; {where})", source="--ledger") from None
    if not tables >= _TABLES:
        raise ConfigError(f"{path} is not an ecr-transfer ledger (no runs/outcomes tables; {where})", source="--ledger")


def open_ledger(url: str | None, *, create: bool = True) -> Ledger:
    """`PATH` or `sqlite:///PATH` -> SQLite; `dynamodb://TABLE` -> DynamoDB.

    `create=False` for readers (status, plan): the ledger must exist already.
    """
    url = url or DEFAULT_LEDGER
    if not create and not url.startswith("dynamodb://"):
        _check_sqlite(url.removeprefix("sqlite://"))
    if url.startswith("dynamodb://"):
        from ecr_transfer.ledger.dynamodb import DynamoDBLedger  # type: ignore[import-not-found, unused-ignore]

        return DynamoDBLedger(url.removeprefix("dynamodb://"))  # type: ignore[no-any-return, unused-ignore]
    from ecr_transfer.ledger.sqlite import SQLiteLedger

    path = url.removeprefix("sqlite://")
    try:
        return SQLiteLedger(path)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path} is not an ecr-transfer ledger ({exc})", source="--ledger") from None
