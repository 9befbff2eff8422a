"""Payloads that cross a boundary: lister -> Map -> copier -> recorder, and the ledger.

Plain strings and numbers only, so every payload is JSON as it is (Step Functions, SQLite,
DynamoDB and the CLI's --json all see the same field names).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

Action = Literal["copy", "skip"]
Status = Literal["copied", "skipped", "failed", "conflict", "in_progress", "interrupted"]
FINAL_STATUSES: frozenset[str] = frozenset({"copied", "skipped", "failed", "conflict", "interrupted"})
FAILED_STATUSES: frozenset[str] = frozenset({"failed", "conflict", "interrupted"})


def now() -> str:
    """The timestamp every payload carries: UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


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


# kw_only: eleven optional strings in a row are one misplaced None away from a silent bug.
@dataclass(frozen=True, slots=True, kw_only=True)
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
    error: str | None = None
    """Known to fail when planned (a `repo:ALL_TAGS` whose tags cannot be listed): recorded failed
    with this cause, never copied. It fails alone, the rest of the run goes on."""
    pushed_at: str | None = None
    """When a push started this copy: the ECR event's time (ISO 8601); push-to-landed latency counts from it."""

    def outcome(
        self,
        run_id: str,
        status: Status,
        *,
        attempts: int = 0,
        error: str | None = None,
        started_at: str | None = None,
        ended_at: str | None = None,
    ) -> Outcome:
        """This item's outcome, with the digests and reason it was planned with."""
        return Outcome(
            run_id=run_id,
            source=self.source,
            target=self.target,
            status=status,
            source_digest=self.source_digest,
            target_digest=self.target_digest,
            attempts=attempts,
            error=error,
            started_at=started_at,
            ended_at=ended_at,
            reason=self.reason,
        )

    def in_progress(self, run_id: str) -> Outcome:
        """Recorded when the copy starts, so a killed run leaves a trace of what it was doing."""
        return self.outcome(run_id, "in_progress", started_at=now())

    def settled(self, run_id: str, status: Status, *, error: str | None = None, attempts: int = 0) -> Outcome:
        """Decided without (another) copy: started and ended at the same moment."""
        stamp = now()
        return self.outcome(run_id, status, error=error, attempts=attempts, started_at=stamp, ended_at=stamp)

    def skipped(self, run_id: str) -> Outcome:
        """The destination already holds the source digest (planned so)."""
        return self.settled(run_id, "skipped")

    def failed(self, run_id: str, cause: str, *, attempts: int = 0) -> Outcome:
        """Failed outside a copy attempt: setting up, a task that ended without a word, an unexpected error."""
        return self.settled(run_id, "failed", error=cause, attempts=attempts)

    def ended(
        self, run_id: str, status: Status, *, attempts: int, started_at: str, error: str | None = None
    ) -> Outcome:
        """The end of copy attempts that began at `started_at` and did not copy (failed, conflict, interrupted)."""
        return self.outcome(run_id, status, attempts=attempts, error=error, started_at=started_at, ended_at=now())

    def copied(self, run_id: str, *, written: str, landed: str, attempts: int, started_at: str, reason: str) -> Outcome:
        """skopeo wrote `written`; the destination now answers `landed` (they differ for one platform of an index)."""
        ended = self.outcome(run_id, "copied", attempts=attempts, started_at=started_at, ended_at=now())
        return replace(ended, source_digest=written, target_digest=landed, reason=reason)


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
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
