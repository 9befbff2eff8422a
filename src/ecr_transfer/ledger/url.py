"""The ledger URL picks the backend: a SQLite file on one machine, a DynamoDB table in the cloud.

Apart from base.py, so the backends (which raise base's LedgerBusyError) do not import the
module that imports them. DynamoDB is imported only when named: it brings boto3.
"""

from __future__ import annotations

from ecr_transfer.ledger.base import Ledger

DEFAULT_LEDGER = "ecr-transfer.db"


def open_ledger(url: str | None) -> Ledger:
    """`PATH` or `sqlite:///PATH` -> SQLite; `dynamodb://TABLE` -> DynamoDB."""
    url = url or DEFAULT_LEDGER
    if url.startswith("dynamodb://"):
        from ecr_transfer.ledger.dynamodb import DynamoDBLedger  # type: ignore[import-not-found, unused-ignore]

        return DynamoDBLedger(url.removeprefix("dynamodb://"))  # type: ignore[no-any-return, unused-ignore]
    from ecr_transfer.ledger.sqlite import SQLiteLedger

    return SQLiteLedger(url.removeprefix("sqlite://"))
