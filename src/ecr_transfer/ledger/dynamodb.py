"""The cloud ledger: one DynamoDB table, keyed like the Data Transfer Hub plugin's.

The table layout (keys, index, item types, attributes) is described in ledger.dynamodb_items.

Writes are idempotent: an outcome is a put on (run, source), so a retried recorder rewrites the
same item. Conditions make sure nothing goes back in time: an `in_progress` write never replaces
a final outcome of the same run, and the latest item only moves forward (same run, or an
outcome that started no earlier than the one recorded).

The lease makes a second concurrent run fail fast (LedgerBusyError). It expires `lease_seconds`
(ECR_TRANSFER_LEASE_SECONDS, default 900) after its last renewal: a heartbeat thread renews it
while the run is open in this process, and the first `record` of the run in any process, then one
every lease_seconds/3, renews it too (so recorder Lambdas keep the cloud run's lease alive; set the
variable above the longest gap between two recorder invocations, e.g. the copier task timeout).
An expired lease, or one left by a dead process on this host, is taken over and its run's
unfinished images are marked `interrupted`.

IAM: dynamodb:GetItem, PutItem, UpdateItem, DeleteItem, Query, BatchWriteItem (record_many's
skips) on the table, and Query on
`<table ARN>/index/ByItemType` for `latest()` (Scan only for a table without that index).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ecr_transfer import envvars
from ecr_transfer.ecr.pacing import client_config
from ecr_transfer.ledger.base import LedgerBusyError
from ecr_transfer.ledger.dynamodb_batch import BatchWriter
from ecr_transfer.ledger.dynamodb_items import (
    LATEST_INDEX,
    LEASE_KEY,
    RUN_TAG,
    RUNS_IMAGE,
    SUMMARY_FIELDS,
    history_item,
    image_key,
    is_conditional_failure,
    latest_item,
    names,
    outcome_values,
    pascal,
    plain,
    table_definition,
    to_item,
    to_outcome,
    to_summary,
)
from ecr_transfer.ledger.dynamodb_table import DynamoDBTable, NoIndex
from ecr_transfer.model import FAILED_STATUSES, Outcome, RunSummary
from ecr_transfer.processes import pid_alive

DEFAULT_LEASE_SECONDS = 900
DEFAULT_HISTORY_DAYS = 90
RECORD_WORKERS = 8
"""Writers in record_many: under botocore's 10 pooled connections per client."""
__all__ = ["LATEST_INDEX", "DynamoDBLedger", "image_key", "table_definition"]
log = logging.getLogger(__name__)


class DynamoDBLedger:
    """The Ledger protocol on one DynamoDB table (see the module docstring for its schema)."""

    def __init__(
        self,
        table_name: str,
        *,
        client: Any = None,
        lease_seconds: int | None = None,
        history_days: int = DEFAULT_HISTORY_DAYS,
        clock: Callable[[], float] = time.time,
        heartbeat: bool = True,
    ) -> None:
        self.table = table_name
        if client is None:
            region = table_name.split(":")[3] if table_name.startswith("arn:") else None
            # Every request is built here, with boto3's TypeSerializer: botocore's client-side
            # check of each attribute of each item was half the CPU of a no-op's batch writes.
            config = client_config().merge(Config(parameter_validation=False))
            client = boto3.client("dynamodb", region_name=region, config=config)
        self._db = DynamoDBTable(client, table_name)
        self._batches = BatchWriter(self._db, workers=RECORD_WORKERS)
        self.lease_seconds = lease_seconds or int(os.environ.get(envvars.LEDGER_LEASE_SECONDS, DEFAULT_LEASE_SECONDS))
        self.history_seconds = history_days * 86400
        self._clock = clock
        self._use_heartbeat = heartbeat
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._renewed: dict[str, float] = {}
        self._lock = threading.Lock()
        self.holder = f"{socket.gethostname()}:{os.getpid()}"

    def _now_iso(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="milliseconds")

    # -- the lease ----------------------------------------------------------------------------
    def _lease(self) -> dict[str, Any] | None:
        item = self._db.call("get_item", Key=to_item({"Image": LEASE_KEY, "Tag": LEASE_KEY}), ConsistentRead=True)
        return plain(item["Item"]) if "Item" in item else None

    def _write_lease(self, run_id: str, started_at: str, holder: str, condition: str, params: dict[str, Any]) -> bool:
        lease = {
            "Image": LEASE_KEY,
            "Tag": LEASE_KEY,
            "ItemType": "LEASE",
            "RunId": run_id,
            "Holder": holder,
            "Host": socket.gethostname(),
            "Pid": os.getpid(),
            "StartedAt": started_at,
            "LeaseExpiresAt": int(self._clock()) + self.lease_seconds,
        }
        return self._db.put(lease, condition, params=params)

    def renew(self, run_id: str) -> bool:
        """Push the lease's expiry forward, if `run_id` still holds it."""
        try:
            self._db.call(
                "update_item",
                Key=to_item({"Image": LEASE_KEY, "Tag": LEASE_KEY}),
                UpdateExpression="SET #LeaseExpiresAt = :e",
                ConditionExpression="#RunId = :r",
                ExpressionAttributeNames=names("#LeaseExpiresAt #RunId"),
                ExpressionAttributeValues=to_item({":e": int(self._clock()) + self.lease_seconds, ":r": run_id}),
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        with self._lock:
            self._renewed[run_id] = self._clock()
        return True

    def _beat(self, run_id: str) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.renew(run_id)
            except Exception:  # a missed beat is retried; the lease has slack
                continue

    def _busy_message(self, lease: dict[str, Any]) -> str:
        return (
            f"ledger dynamodb://{self.table} is in use by run {lease.get('RunId')} ({lease.get('Holder')}, "
            f"started {lease.get('StartedAt')}); wait for it to finish or use another --ledger"
        )

    def busy(self) -> str | None:
        lease = self._lease()
        if not lease or int(lease.get("LeaseExpiresAt", 0)) < int(self._clock()):
            return None
        dead_here = lease.get("Host") == socket.gethostname() and not pid_alive(int(lease.get("Pid", 0)))
        return None if dead_here else self._busy_message(lease)

    def start_run(self, run_id: str, started_at: str, holder: str = "") -> list[RunSummary]:
        holder = holder or self.holder
        recovered: list[RunSummary] = []
        now = int(self._clock())
        free = "attribute_not_exists(#Tag) OR #LeaseExpiresAt < :now OR #RunId = :run"
        if not self._write_lease(run_id, started_at, holder, free, {":now": now, ":run": run_id}):
            lease = self._lease() or {}
            dead_here = lease.get("Host") == socket.gethostname() and not pid_alive(int(lease.get("Pid", 0)))
            taken = dead_here and self._write_lease(
                run_id,
                started_at,
                holder,
                "#RunId = :old AND #Holder = :holder",
                {":old": lease.get("RunId"), ":holder": lease.get("Holder")},
            )
            if not taken:
                raise LedgerBusyError(self._busy_message(lease))
            recovered.append(self._interrupt(str(lease["RunId"]), f"process {lease.get('Holder')} ended", started_at))
        else:
            # We may have taken over an expired lease: find out whose, from the run list.
            recovered.extend(self._recover_expired(run_id, started_at))
        self._write_summary(RunSummary(run_id=run_id, started_at=started_at, state="running", note=None), holder)
        with self._lock:
            self._renewed[run_id] = self._clock()
        if self._use_heartbeat and self._heartbeat is None:
            self._stop.clear()
            self._heartbeat = threading.Thread(target=self._beat, args=(run_id,), daemon=True, name="ledger-lease")
            self._heartbeat.start()
        return recovered

    def _recover_expired(self, run_id: str, at: str) -> list[RunSummary]:
        found = []
        for item in self._db.query(
            RUNS_IMAGE,
            ScanIndexForward=False,
            Limit=20,
            FilterExpression="#State = :running",
            values={":running": "running"},
        ):
            other = str(plain(item)["RunId"])
            if other != run_id:
                found.append(self._interrupt(other, "its lease expired", at))
        return found

    def _interrupt(self, run_id: str, why: str, at: str) -> RunSummary:
        error = f"the run was interrupted ({why}) while this image was being copied; the next run re-plans it"
        for item in self._db.query(
            f"RUN#{run_id}", FilterExpression="#TransferStatus = :p", values={":p": "in_progress"}
        ):
            data = plain(item)
            values = {":i": "interrupted", ":e": error, ":t": at, ":p": "in_progress", ":r": run_id, ":s": "Error"}
            update = "SET #TransferStatus = :i, #ErrorMessage = :e, #EndedAt = :t, #UpdatedAt = :t, #Status = :s"
            condition = "#TransferStatus = :p AND #RunId = :r"
            image, tag = image_key(str(data["Source"]))
            for key in ({"Image": f"RUN#{run_id}", "Tag": data["Source"]}, {"Image": image, "Tag": tag}):
                try:
                    self._db.call(
                        "update_item",
                        Key=to_item(key),
                        UpdateExpression=update,
                        ConditionExpression=condition,
                        ExpressionAttributeNames=names(update, condition),
                        ExpressionAttributeValues=to_item(values),
                    )
                except ClientError as exc:
                    if not is_conditional_failure(exc):
                        raise
        return self._finish(run_id, at, "interrupted", f"interrupted: {why}; detected at {at}")

    # -- runs ---------------------------------------------------------------------------------
    def _write_summary(self, summary: RunSummary, holder: str | None = None) -> None:
        values: dict[str, Any] = {pascal(f): getattr(summary, f) for f in SUMMARY_FIELDS}
        values.update(ItemType="RUN", Holder=holder, ExpiresAt=int(self._clock()) + self.history_seconds)
        self._db.put({"Image": f"RUN#{summary.run_id}", "Tag": RUN_TAG, **values})
        values["ItemType"] = "RUNLIST"
        self._db.put({"Image": RUNS_IMAGE, "Tag": f"{summary.started_at}#{summary.run_id}", **values})

    def _run(self, run_id: str) -> RunSummary | None:
        item = self._db.call("get_item", Key=to_item({"Image": f"RUN#{run_id}", "Tag": RUN_TAG}), ConsistentRead=True)
        return to_summary(item["Item"]) if "Item" in item else None

    def _finish(self, run_id: str, ended_at: str, state: str, note: str | None = None) -> RunSummary:
        counts = {"planned": 0, "copied": 0, "skipped": 0, "failed": 0}
        for item in self._db.query(
            f"RUN#{run_id}", ProjectionExpression="#TransferStatus, #ItemType", ConsistentRead=True
        ):
            data = plain(item)
            if data.get("ItemType") != "OUTCOME":
                continue
            counts["planned"] += 1
            status = data.get("TransferStatus")
            if status in FAILED_STATUSES:
                counts["failed"] += 1
            elif status in ("copied", "skipped"):
                counts[str(status)] += 1
        previous = self._run(run_id)
        started = previous.started_at if previous else ended_at
        summary = RunSummary(
            run_id=run_id,
            started_at=started,
            ended_at=ended_at,
            state=state,
            note=note or (previous.note if previous else None),
            **counts,
        )
        self._write_summary(summary)
        return summary

    def finish_run(self, run_id: str, ended_at: str, state: str = "finished") -> RunSummary:
        summary = self._finish(run_id, ended_at, state)
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
        try:
            self._db.call(
                "delete_item",
                Key=to_item({"Image": LEASE_KEY, "Tag": LEASE_KEY}),
                ConditionExpression="#RunId = :r",
                ExpressionAttributeNames=names("#RunId"),
                ExpressionAttributeValues=to_item({":r": run_id}),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        return summary

    def runs(self, limit: int = 20) -> list[RunSummary]:
        return [to_summary(i) for i in self._db.query(RUNS_IMAGE, ScanIndexForward=False, Limit=limit)]

    # -- outcomes -----------------------------------------------------------------------------
    def record(self, outcome: Outcome) -> None:
        """Idempotent on (run_id, source); never regresses a final outcome or the latest item."""
        values = outcome_values(outcome, self._now_iso())
        params: dict[str, Any] = {":run": outcome.run_id, ":started": outcome.started_at or "", ":p": "in_progress"}
        progress = outcome.status == "in_progress"
        history = history_item(outcome, values, int(self._clock()) + self.history_seconds)
        if progress:
            self._db.put(history, "attribute_not_exists(#Tag) OR #TransferStatus = :p", params={":p": "in_progress"})
        else:
            self._db.put(history)
        same_run = "#RunId = :run AND #TransferStatus = :p" if progress else "#RunId = :run"
        condition = (
            f"attribute_not_exists(#Tag) OR attribute_not_exists(#RunId) OR ({same_run}) "
            "OR (#RunId <> :run AND #StartedAt <= :started)"
        )
        if not progress:
            params.pop(":p")
        self._db.put(latest_item(outcome, values), condition, params=params)
        self._keep_lease(outcome.run_id)

    def _keep_lease(self, run_id: str) -> None:
        with self._lock:
            last = self._renewed.get(run_id)
        # Copier tasks record from other processes: their writes keep the run's lease alive too.
        if last is None or self._clock() - last > self.lease_seconds / 3:
            self.renew(run_id)

    def record_many(self, outcomes: Sequence[Outcome]) -> None:
        """Every outcome as `record` writes it, several at once: a lister records thousands of skips.

        Skipped outcomes go in BatchWriteItem requests (25 puts each) without `record`'s conditions,
        which only the run holding the lease may do, as its lister and the CLI's run do: the latest
        item's condition keeps an older run's late write from replacing a newer one, and no run
        newer than the lease holder's exists, nor does this run write anything else for an image
        it skips. So a no-op run of N images costs about 2N/25 requests instead of 2N.
        """
        skips = [o for o in outcomes if o.status == "skipped"]
        if skips:
            items: list[dict[str, Any]] = []
            at, expires = self._now_iso(), int(self._clock()) + self.history_seconds
            for o in skips:
                values = outcome_values(o, at)
                items += [history_item(o, values, expires), latest_item(o, values)]
            self._batches.put_all(items)
            for run_id in dict.fromkeys(o.run_id for o in skips):
                self._keep_lease(run_id)
        rest = [o for o in outcomes if o.status != "skipped"]
        if rest:
            with ThreadPoolExecutor(max_workers=RECORD_WORKERS, thread_name_prefix="ledger") as pool:
                list(pool.map(self.record, rest))

    def latest(self) -> list[Outcome]:
        """Every LATEST item: a Query on the ItemType index, already sorted by source.

        A table made before the index existed (an old CLI ledger) is scanned instead, which
        needs dynamodb:Scan; the deployed table has the index, so the lister has no Scan.
        """
        key = {"ExpressionAttributeNames": names("#ItemType"), "ExpressionAttributeValues": to_item({":t": "LATEST"})}
        query = {"IndexName": LATEST_INDEX, "KeyConditionExpression": "#ItemType = :t", **key}
        try:
            return [to_outcome(i) for i in self._db.pages("query", query, missing_index_raises=True)]
        except NoIndex:
            log.warning("table %s has no %s index (an older ledger): scanning it", self.table, LATEST_INDEX)
        found = [to_outcome(i) for i in self._db.pages("scan", {"FilterExpression": "#ItemType = :t", **key})]
        return sorted(found, key=lambda o: o.source)

    def outcomes(self, run_id: str) -> list[Outcome]:
        items = self._db.query(f"RUN#{run_id}", FilterExpression="#ItemType = :t", values={":t": "OUTCOME"})
        return sorted((to_outcome(i) for i in items), key=lambda o: o.source)

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
