"""Payloads that cross a boundary: lister -> Map -> copier -> recorder, and the ledger.

Plain strings and numbers only, so every payload is JSON as it is (Step Functions, SQLite,
DynamoDB and the CLI's --json all see the same field names).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Self

Action = Literal["copy", "skip"]
Status = Literal["copied", "skipped", "failed", "conflict", "in_progress", "interrupted"]
FINAL_STATUSES: frozenset[str] = frozenset({"copied", "skipped", "failed", "conflict", "interrupted"})
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "conflict", "interrupted"})


class _Payload:
    """JSON round trip that ignores unknown keys, so older/newer payloads stay readable."""

    _names: ClassVar[dict[type, tuple[str, ...]]] = {}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        names = _Payload._names.get(cls)
        if names is None:
            names = _Payload._names[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
        return names

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain string or number, so a shallow dict equals asdict(), which
        # deep-copies and costs ~0.5 ms: the ledger calls this for each of thousands of skips.
        return {name: getattr(self, name) for name in self.field_names()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = cls.field_names()
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class WorkItem(_Payload):
    """One image to transfer (or skip), decided by the planner."""

    source: str
    """Full source reference with host: `quay.io/coreos/etcd:v3.5.0` or `...@sha256:...`."""
    target: str
    """Full destination reference with host."""
    action: Action
    reason: str
    source_digest: str | None = None
    target_digest: str | None = None
    """What the destination held when planned (None: nothing there)."""


@dataclass(frozen=True, slots=True)
class Outcome(_Payload):
    """The final word on one work item in one run."""

    run_id: str
    source: str
    target: str
    status: Status
    source_digest: str | None = None
    target_digest: str | None = None
    attempts: int = 0
    error: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RunSummary(_Payload):
    run_id: str
    started_at: str
    ended_at: str | None = None
    state: str = "running"
    planned: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    note: str | None = None


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """The `counts` object of the JSON contract; conflicts and interruptions count as failed."""
    return status_counts(Counter(o.status for o in outcomes))


def status_counts(statuses: Mapping[str, int]) -> dict[str, int]:
    """`counts` from how many outcomes have each status (a ledger can count them without reading them)."""
    result = {"planned": sum(statuses.values()), "copied": 0, "skipped": 0, "failed": 0}
    for status, n in statuses.items():
        if status in FAILED_STATUSES:
            result["failed"] += n
        elif status in ("copied", "skipped"):
            result[status] += n
    return result
