"""The recorder step: batch outcomes from S3 into the ledger, and closing a run.

The copier task cannot hand its result back to Step Functions, so it writes the batch's
outcomes to S3 under a key both sides derive from the batch (`batch.outcome_key`). On the
Catch path the task failed as a whole: every item without a written outcome is recorded as
failed, carrying the full error and cause Step Functions reported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ecr_transfer.cloud import batch
from ecr_transfer.ledger.base import Ledger
from ecr_transfer.metrics import failures_by_cause
from ecr_transfer.model import FAILED_STATUSES, Outcome, WorkItem, now

MAX_FAILURES_REPORTED = 10
"""Failures listed in the run summary (and so in the notification); the ledger has them all."""
MAX_FAILURE_TEXT = 500


def describe_error(error: Mapping[str, Any] | None) -> str | None:
    """`Error: summary | cause: <full cause>` from a Step Functions error object.

    For a failed ECS task the cause is the task description as JSON; its stop reason and exit
    code lead, so the first line says what happened, and the full cause follows.
    """
    if not error:
        return None
    name = str(error.get("Error") or "Error")
    cause = str(error.get("Cause") or "")
    summary = ""
    try:
        task = json.loads(cause)
    except (json.JSONDecodeError, TypeError):
        task = None
    if isinstance(task, dict):
        parts = [str(task.get("StoppedReason") or task.get("stoppedReason") or "")]
        for container in task.get("Containers") or task.get("containers") or []:
            code = container.get("ExitCode", container.get("exitCode"))
            if code is not None:
                parts.append(f"exit code {code}")
        summary = ", ".join(p for p in parts if p)
    head = f"{name}: {summary}" if summary else name
    return f"{head} | cause: {cause}" if cause else head


def failed_outcome(item: WorkItem, run_id: str, error: str) -> Outcome:
    return item.failed(run_id, error)


def read_outcomes(s3: Any, bucket: str, key: str) -> list[Outcome]:
    """The batch's outcomes, or [] when the copier wrote none."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return []
    return batch.parse_outcomes(body)


def record_batch(event: Mapping[str, Any], *, ledger: Ledger, s3: Any) -> dict[str, Any]:
    run_id = str(event["run_id"])
    items = batch.parse_items(event["items"])
    key = batch.outcome_key(str(event["outcome_prefix"]), items)
    written = {(o.source, o.target): o for o in read_outcomes(s3, str(event["bucket"]), key) if o.run_id == run_id}
    missing = describe_error(event.get("error")) or (
        f"the copy task ended without writing an outcome for this image (task {event.get('task_arn') or 'unknown'})"
    )
    counts: dict[str, Any] = {"recorded": 0, "copied": 0, "failed": 0, "skipped": 0}
    outcomes = []
    for item in items:
        outcome = written.get((item.source, item.target)) or failed_outcome(item, run_id, missing)
        ledger.record(outcome)
        outcomes.append(outcome)
        counts["recorded"] += 1
        if outcome.status in FAILED_STATUSES:
            counts["failed"] += 1
        elif outcome.status in ("copied", "skipped"):
            counts[outcome.status] += 1
    # For the ImageFailures metric (and a reader of the execution history): why they failed.
    counts["failures_by_cause"] = failures_by_cause(outcomes)
    return counts


def finish_run(event: Mapping[str, Any], *, ledger: Ledger) -> dict[str, Any]:
    """Close the run; `error` (the run's Catch path) closes it as failed."""
    run_id = str(event["run_id"])
    error = describe_error(event.get("error"))
    summary = ledger.finish_run(run_id, now(), "failed" if error else "finished")
    # The summary counted the failures: a run without any (the daily no-op) reads no outcomes,
    # which for 20,000 skipped images would be every history item of the run once more.
    outcomes = ledger.outcomes(run_id) if summary.failed else []
    failures = [
        {"source": o.source, "status": o.status, "error": (o.error or "")[:MAX_FAILURE_TEXT]}
        for o in outcomes
        if o.status in FAILED_STATUSES
    ][:MAX_FAILURES_REPORTED]
    return {
        "run_id": run_id,
        "state": summary.state,
        "planned": summary.planned,
        "copied": summary.copied,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "failures": failures,
        "error": error,
    }


def handle(event: Mapping[str, Any], *, ledger: Ledger, s3: Any) -> dict[str, Any]:
    action = event.get("action")
    if action == "record_batch":
        return record_batch(event, ledger=ledger, s3=s3)
    if action == "finish_run":
        return finish_run(event, ledger=ledger)
    raise ValueError(f"unknown recorder action {action!r}")
