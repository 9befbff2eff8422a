"""Every CloudWatch metric the product emits: name, unit, dimensions, who emits it and from what.

The one place these names live. The Lambdas (Powertools Metrics), the copier (Powertools' EMF
lines on stdout, in Fargate and in Lambda alike), the dashboard (ecr_transfer.cloud.dashboard,
rendered into template.yaml) and the alarms all take them from here, and
tests/unit/test_observability.py checks the template against this module and the code's output.

Counts are split so that nothing is counted twice: the lister counts what it planned (its skips
never reach a batch), the recorder what each batch ended with (also when the task died without a
word), the copier what only it knows (bytes, how long a copy took, when a pushed image landed).
Summed over a run they are the run's totals. The run id is never a dimension: every distinct
dimension value is another billed metric; it is in each EMF line as a property instead, for
CloudWatch Logs Insights.

This module imports nothing of the cloud: the datapoints are plain values, turned into EMF by
ecr_transfer.cloud.emf.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ecr_transfer.model import FAILED_STATUSES, Outcome, WorkItem

NAMESPACE = "ECRTransfer"
SERVICE = "ecr-transfer"
SERVICE_DIMENSION = "service"
"""Powertools' own dimension name for the service."""
STACK_DIMENSION = "Stack"
"""The stack name: two stacks in one account and region keep apart."""
CAUSE_DIMENSION = "Cause"

Unit = Literal["Count", "Bytes", "Seconds"]
Emitter = Literal["push_intake", "lister", "recorder", "copier"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    name: str
    unit: Unit
    emitter: Emitter
    description: str
    by_cause: bool = False
    """Emitted with the Cause dimension too (one metric per cause)."""

    @property
    def dimensions(self) -> tuple[str, ...]:
        base = (STACK_DIMENSION, SERVICE_DIMENSION)
        return (*base, CAUSE_DIMENSION) if self.by_cause else base


def _metric(name: str, unit: Unit, emitter: Emitter, description: str, *, by_cause: bool = False) -> Metric:
    return Metric(name=name, unit=unit, emitter=emitter, description=description, by_cause=by_cause)


IMAGES_PUSHED = _metric("ImagesPushed", "Count", "push_intake", "ECR push events received (onPush)")
PUSH_RUNS_STARTED = _metric("PushRunsStarted", "Count", "push_intake", "Executions started for bursts of pushes")
RUNS_STARTED = _metric("RunsStarted", "Count", "lister", "Runs planned (scheduled, after a deployment, on push)")
IMAGES_PLANNED = _metric("ImagesPlanned", "Count", "lister", "Images a run looked at")
IMAGES_TO_COPY = _metric("ImagesToCopy", "Count", "lister", "Images a run found changed, to copy")
IMAGES_SKIPPED = _metric(
    "ImagesSkipped", "Count", "lister", "Images already at the destination (lister: planned; recorder: at copy time)"
)
IMAGES_COPIED = _metric("ImagesCopied", "Count", "recorder", "Images copied")
IMAGES_FAILED = _metric("ImagesFailed", "Count", "recorder", "Images that failed (failed, conflict, interrupted)")
IMAGE_FAILURES = _metric("ImageFailures", "Count", "recorder", "Failed images by cause", by_cause=True)
RUNS_FINISHED = _metric("RunsFinished", "Count", "recorder", "Runs that ended (succeeded or failed)")
RUNS_SUCCEEDED = _metric("RunsSucceeded", "Count", "recorder", "Runs that ended with no failed image")
RUNS_FAILED = _metric("RunsFailed", "Count", "recorder", "Runs that failed, or ended with failed images")
BYTES_COPIED = _metric(
    "BytesCopied", "Bytes", "copier", "Size of the copied images' blobs (Docker Hub images: not measured)"
)
COPY_DURATION = _metric(
    "CopyDuration", "Seconds", "copier", "Seconds from an image's first copy attempt to its landing"
)
PUSH_TO_LANDED = _metric(
    "PushToLandedLatency", "Seconds", "copier", "Seconds from an image's push (ECR event time) to its landing"
)
FARGATE_TASKS_STARTED = _metric("FargateTasksStarted", "Count", "copier", "Fargate copy tasks that started a batch")
LAMBDA_BATCHES_STARTED = _metric("LambdaBatchesStarted", "Count", "copier", "Batches the Lambda fast path started")

METRICS: tuple[Metric, ...] = (
    IMAGES_PUSHED,
    PUSH_RUNS_STARTED,
    RUNS_STARTED,
    IMAGES_PLANNED,
    IMAGES_TO_COPY,
    IMAGES_SKIPPED,
    IMAGES_COPIED,
    IMAGES_FAILED,
    IMAGE_FAILURES,
    RUNS_FINISHED,
    RUNS_SUCCEEDED,
    RUNS_FAILED,
    BYTES_COPIED,
    COPY_DURATION,
    PUSH_TO_LANDED,
    FARGATE_TASKS_STARTED,
    LAMBDA_BATCHES_STARTED,
)

# Failure causes: a small fixed set (each is a billed metric), read from the outcome's status and
# error text. The first rule that matches wins.
CONFLICT, INTERRUPTED, TASK_FAILED, SETUP = "Conflict", "Interrupted", "TaskFailed", "Setup"
ACCESS_DENIED, NOT_FOUND, RATE_LIMITED, TIMEOUT, OTHER = "AccessDenied", "NotFound", "RateLimited", "Timeout", "Other"
_ERROR_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^cannot set up the copy"), SETUP),
    (re.compile(r"^States\.|the copy task ended without writing"), TASK_FAILED),
    (re.compile(r"toomanyrequests|too many requests|rate limit|\b429\b", re.I), RATE_LIMITED),
    (
        re.compile(r"unauthori[sz]ed|authentication required|access ?denied|denied:|forbidden|\b40[13]\b", re.I),
        ACCESS_DENIED,
    ),
    (re.compile(r"manifest unknown|name unknown|not found|does not exist|\b404\b", re.I), NOT_FOUND),
    (re.compile(r"timed out|timeout|deadline exceeded", re.I), TIMEOUT),
)
CAUSES: tuple[str, ...] = (CONFLICT, INTERRUPTED, *(cause for _, cause in _ERROR_CAUSES), OTHER)


def failure_cause(outcome: Outcome) -> str:
    if outcome.status == "conflict":
        return CONFLICT
    if outcome.status == "interrupted":
        return INTERRUPTED
    error = outcome.error or ""
    return next((cause for pattern, cause in _ERROR_CAUSES if pattern.search(error)), OTHER)


@dataclass(frozen=True, slots=True, kw_only=True)
class Datapoint:
    metric: Metric
    value: float
    cause: str | None = None


def _point(metric: Metric, value: float) -> Datapoint:
    return Datapoint(metric=metric, value=float(value))


def received(result: Mapping[str, Any]) -> list[Datapoint]:
    """The push intake's, from what it returns for one batch of push events."""
    return [_point(IMAGES_PUSHED, result["pushed"]), _point(PUSH_RUNS_STARTED, len(result["executions"]))]


def planned(result: Mapping[str, Any]) -> list[Datapoint]:
    """The lister's, from the payload it returns to the state machine."""
    return [
        _point(RUNS_STARTED, 1),
        _point(IMAGES_PLANNED, result["planned"]),
        _point(IMAGES_TO_COPY, result["to_copy"]),
        _point(IMAGES_SKIPPED, result["skipped"]),
    ]


def failures_by_cause(outcomes: Iterable[Outcome]) -> dict[str, int]:
    """How many of `outcomes` failed, by cause (only the causes that occur)."""
    return dict(sorted(Counter(failure_cause(o) for o in outcomes if o.status in FAILED_STATUSES).items()))


def recorded(result: Mapping[str, Any]) -> list[Datapoint]:
    """The recorder's, from what record_batch returns for one batch (as written to the ledger)."""
    causes: Mapping[str, int] = result["failures_by_cause"]
    return [
        _point(IMAGES_COPIED, result["copied"]),
        _point(IMAGES_SKIPPED, result["skipped"]),
        _point(IMAGES_FAILED, result["failed"]),
        *(Datapoint(metric=IMAGE_FAILURES, value=float(n), cause=cause) for cause, n in causes.items()),
    ]


def finished(summary: Mapping[str, Any]) -> list[Datapoint]:
    """The recorder's, from the run summary of finish_run: a run with a failed image is a failed run."""
    failed = summary["state"] != "finished" or bool(summary["failed"])
    return [
        _point(RUNS_FINISHED, 1),
        _point(RUNS_SUCCEEDED, 0 if failed else 1),
        _point(RUNS_FAILED, 1 if failed else 0),
    ]


def batch_started(*, in_lambda: bool) -> list[Datapoint]:
    return [_point(LAMBDA_BATCHES_STARTED if in_lambda else FARGATE_TASKS_STARTED, 1)]


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        delta = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return None
    return delta if delta >= 0 else None


def copied(items: Iterable[WorkItem], outcomes: Iterable[Outcome], sizes: Mapping[str, int]) -> list[Datapoint]:
    """The copier's, for the images of its batch that were copied.

    `sizes`: source reference -> bytes of its blobs, for the images whose size is known.
    CopyDuration and PushToLandedLatency have one value per image (CloudWatch keeps each one, so
    the dashboard's percentiles are over images, not batches).
    """
    by_source = {i.source: i for i in items}
    points: list[Datapoint] = []
    total, landed = 0, 0
    for outcome in outcomes:
        if outcome.status != "copied":
            continue
        landed += 1
        total += sizes.get(outcome.source, 0)
        took = _seconds(outcome.started_at, outcome.ended_at)
        if took is not None:
            points.append(_point(COPY_DURATION, took))
        item = by_source.get(outcome.source)
        latency = _seconds(item.pushed_at if item else None, outcome.ended_at)
        if latency is not None:
            points.append(_point(PUSH_TO_LANDED, latency))
    return [_point(BYTES_COPIED, total), *points] if landed else []
