"""Unconditional puts in BatchWriteItem requests: how the ledger writes a run's skipped images.

A no-op run of 20,000 images used to be 40,000 PutItem calls (a history item and the latest item
per image); in batches of 25 puts it is 1,600 requests. BatchWriteItem takes no conditions, so
only writes that need none come here (see DynamoDBLedger.record_many). DynamoDB may leave part
of a batch unwritten under throttling (`UnprocessedItems`, not an error): those are sent again
with backoff until written, or the call fails with the count left, never silently short.

IAM: dynamodb:BatchWriteItem on the table.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ecr_transfer.errors import TransientError
from ecr_transfer.ledger.dynamodb_items import to_item
from ecr_transfer.ledger.dynamodb_table import DynamoDBTable

BATCH_PUTS = 25
"""DynamoDB's limit of write requests per BatchWriteItem."""
MAX_ROUNDS = 8
"""Rounds of resending unprocessed puts (about 25 s of backoff in all) before giving up."""


def chunks(items: Iterable[dict[str, Any]], size: int = BATCH_PUTS) -> Iterator[list[dict[str, Any]]]:
    """Batches of at most `size` puts, no key twice in one (DynamoDB refuses such a batch): a
    repeated key starts the next batch, so the later write still lands after the earlier one."""
    batch: list[dict[str, Any]] = []
    keys: set[tuple[str, str]] = set()
    for item in items:
        key = (item["Image"], item["Tag"])
        if len(batch) == size or key in keys:
            yield batch
            batch, keys = [], set()
        batch.append(item)
        keys.add(key)
    if batch:
        yield batch


class BatchWriter:
    def __init__(self, db: DynamoDBTable, *, workers: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self._db = db
        self._workers = workers
        self._sleep = sleep

    def put_all(self, items: Sequence[dict[str, Any]]) -> int:
        """Write every item; returns the number of BatchWriteItem requests made."""
        batches = list(chunks(items))
        if not batches:
            return 0
        if len(batches) == 1 or self._workers <= 1:
            return sum(self._write(b) for b in batches)
        # Batches holding the same key run in order (chunks() split them), other batches at once.
        ordered, free = _split_repeats(batches)
        with ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="ledger-batch") as pool:
            requests = sum(pool.map(self._write, free))
        return requests + sum(self._write(b) for b in ordered)

    def _write(self, batch: list[dict[str, Any]]) -> int:
        pending = [{"PutRequest": {"Item": to_item(item)}} for item in batch]
        requests = 0
        for round_ in range(MAX_ROUNDS + 1):
            # A throttled request as a whole is retried by botocore's retry mode (client_config).
            pending = self._db.batch_write(pending)
            requests += 1
            if not pending:
                return requests
            if round_ < MAX_ROUNDS:
                self._sleep(min(5.0, 0.05 * 2**round_) * (0.5 + random.random() / 2))
        raise TransientError(
            f"DynamoDB table {self._db.table}: {len(pending)} puts still unprocessed after {requests} tries"
        )


def _split_repeats(
    batches: list[list[dict[str, Any]]],
) -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """(batches sharing a key with another batch, in order; the rest)."""
    seen: dict[tuple[str, str], int] = {}
    shared: set[int] = set()
    for n, batch in enumerate(batches):
        for item in batch:
            key = (item["Image"], item["Tag"])
            if key in seen:
                shared.update((seen[key], n))
            seen[key] = n
    ordered = [b for n, b in enumerate(batches) if n in shared]
    return ordered, [b for n, b in enumerate(batches) if n not in shared]
