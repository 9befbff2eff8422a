"""The work list and batch contract shared by the lister, the copier task and the recorder.

S3 layout, per run:  runs/<run id>/work-list.json        the copy items, one JSON array
                     runs/<run id>/outcomes/<key>.json   one file per batch, written by the copier

A batch reaches the copier as the JSON of its items in one environment variable, so the
batch size is bounded by ECS RunTask's overrides limit (8192 characters in total), not by
Step Functions: MAX_BATCH_BYTES mirrors the ItemBatcher in the ASL (a test keeps them equal) and
leaves room for JSON escaping and the other overrides. The number of items per batch comes from
the lister (`batch_size`, at most MAX_ITEMS_PER_BATCH), so that a run's copies spread over as
many Fargate tasks as the Map may run at once instead of filling a few tasks that copy one
image after another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ecr_transfer.errors import ConfigError
from ecr_transfer.model import Outcome, WorkItem

# Environment variables the state machine sets on the copier container (per batch) and the
# template sets on the functions.
WORK_BUCKET = "ECR_TRANSFER_WORK_BUCKET"
RUN_ID = "ECR_TRANSFER_RUN_ID"
OUTCOME_PREFIX = "ECR_TRANSFER_OUTCOME_PREFIX"
WORK_ITEMS = "ECR_TRANSFER_WORK_ITEMS"

MAX_ITEMS_PER_BATCH = 20
MAX_BATCH_BYTES = 6144
RUN_TASK_OVERRIDES_LIMIT = 8192
MAX_REASON = 200
"""Reasons are for humans; a long one (an error text) must not crowd other items out of a batch."""


def batch_size(to_copy: int, concurrency: int) -> int:
    """Items per batch: the copies spread evenly over `concurrency` tasks, at most MAX_ITEMS_PER_BATCH."""
    per_task = -(-to_copy // max(1, concurrency))
    return max(1, min(MAX_ITEMS_PER_BATCH, per_task))


def run_prefix(run_id: str) -> str:
    if not run_id or "/" in run_id:
        raise ValueError(f"not a run id: {run_id!r}")
    return f"runs/{run_id}/"


def work_list_key(run_id: str) -> str:
    return run_prefix(run_id) + "work-list.json"


def outcome_prefix(run_id: str) -> str:
    return run_prefix(run_id) + "outcomes/"


def compact(item: WorkItem) -> dict[str, Any]:
    """The work-list form of an item: no empty fields, a bounded reason."""
    data = {k: v for k, v in item.to_dict().items() if v is not None}
    if len(data.get("reason", "")) > MAX_REASON:
        data["reason"] = data["reason"][: MAX_REASON - 1] + "…"
    return data


def work_list_body(items: Iterable[WorkItem]) -> bytes:
    return json.dumps([compact(i) for i in items], separators=(",", ":")).encode()


def parse_items(raw: str | Sequence[Mapping[str, Any]]) -> list[WorkItem]:
    """Items from the copier's environment (a JSON string) or a state payload (a list)."""
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise ConfigError(f"work items are not JSON: {exc}", source=WORK_ITEMS) from None
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ConfigError("work items must be a JSON array of objects", source=WORK_ITEMS)
    try:
        return [WorkItem.from_dict(dict(d)) for d in data]
    except TypeError as exc:
        raise ConfigError(f"a work item is incomplete: {exc}", source=WORK_ITEMS) from None


def outcome_key(prefix: str, items: Iterable[WorkItem]) -> str:
    """Where the copier writes a batch's outcomes, derived from the batch itself.

    Both the copier and the recorder compute it from the same items, so no task output has to
    travel back through Step Functions, and a retried task overwrites the same object.
    """
    pairs = sorted((i.source, i.target) for i in items)
    digest = hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()
    return f"{prefix}{digest[:32]}.json"


def outcomes_body(outcomes: Iterable[Outcome]) -> bytes:
    return json.dumps([o.to_dict() for o in outcomes], separators=(",", ":")).encode()


def parse_outcomes(body: bytes | str) -> list[Outcome]:
    data = json.loads(body)
    if not isinstance(data, list):
        raise ValueError("batch outcomes must be a JSON array")
    return [Outcome.from_dict(d) for d in data]
