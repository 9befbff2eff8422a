"""plan -> copy -> record, the same functions the CLI and the cloud glue call."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from ecr_transfer.batches import Batch, BatchCopier, Unit, batch_images, plan_units, units_of
from ecr_transfer.blobsched import inspect
from ecr_transfer.bytemeter import ByteMeter
from ecr_transfer.context import TransferContext
from ecr_transfer.copier import Copier
from ecr_transfer.ledger.base import Ledger, LedgerBusyError
from ecr_transfer.model import Outcome, RunSummary, WorkItem, now
from ecr_transfer.planner import plan
from ecr_transfer.scheduler import CopyScheduler
from ecr_transfer.settings import Settings

log = logging.getLogger(__name__)


class OutcomeSink(Protocol):
    """Where copy_items writes each outcome as it happens: a ledger, or the task's own list."""

    def record(self, outcome: Outcome) -> None: ...

    def record_many(self, outcomes: Sequence[Outcome]) -> None: ...


CopierFactory = Callable[..., Copier]


class Progress(Protocol):
    def planned(self, items: list[WorkItem]) -> None: ...

    def finished(self, outcome: Outcome) -> None: ...

    counts_bytes: bool
    """Whether to measure bytes landing while copies run (a live terminal line does)."""

    def landed(self, size: int) -> None:
        """`size` more bytes reached the destination."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: str
    items: list[WorkItem]
    outcomes: list[Outcome]
    summary: RunSummary
    recovered: list[RunSummary]


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)


def copy_order(items: Iterable[WorkItem]) -> list[WorkItem]:
    """Group copies by destination repository so images sharing layers meet skopeo's blob
    cache in sequence rather than racing to upload the same blob."""
    return sorted(items, key=lambda i: (i.target.rsplit(":", 1)[0], i.target))


def copy_items(
    context: TransferContext,
    ledger: OutcomeSink,
    run_id: str,
    items: list[WorkItem],
    *,
    concurrency: int,
    progress: Progress | None = None,
    copier_factory: CopierFactory = Copier,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Copy up to `concurrency` images at once; every item ends with exactly one final outcome.

    Small single-platform images of a repository go several per skopeo process (batches.py),
    the rest one per process. The CLI's run, the Fargate task's batch and the Lambda fast path all
    copy through here. `stop`, once set, lets no new copy attempt start: the items not yet copied
    end "interrupted" (the fast path sets it when its invocation runs short of time)."""
    stop = threading.Event() if stop is None else stop
    outcomes: list[Outcome] = []
    pending = copy_order(items)
    # The real copier batches; a stand-in (tests) copies what it is given, one by one.
    batching = isinstance(copier_factory, type) and issubclass(copier_factory, Copier) and len(pending) > 1
    inspection = inspect(context.clients, pending)
    units, blobs = (
        plan_units(pending, inspection, context, concurrency, batch_images())
        if batching
        else (list[Unit](pending), inspection.blobs)
    )
    scheduler: CopyScheduler[Unit, list[Outcome]] = CopyScheduler(context.clients, units, blobs=blobs)
    # Built on every run, copies or not: it removes authfiles a killed run left behind.
    copier = copier_factory(context, run_id, stop=stop, slots=concurrency, demand=scheduler.demand)
    batcher = BatchCopier(copier) if batching else None
    if not pending:
        return outcomes

    # A live progress line shows bytes as blobs land (see bytemeter); nothing else pays for it.
    meter = ByteMeter(context.clients, progress.landed) if progress is not None and progress.counts_bytes else None

    def work(unit: Unit) -> list[Outcome]:
        images = units_of(unit)
        ledger.record_many([item.in_progress(run_id) for item in images])
        if meter is not None:
            for item in images:
                meter.started(item)
        try:
            if isinstance(unit, Batch) and batcher is not None:
                return batcher.copy(unit)
            return [copier.copy(item) for item in images]
        except Exception as exc:
            # A bug or an unforeseen error in one copy must not abort the whole run (and leave
            # every other image "interrupted"): it is this image's failure, with its cause.
            log.exception("%s: unexpected error while copying", images[0].source)
            cause = f"unexpected error: {type(exc).__name__}: {exc}"
            return [item.failed(run_id, cause, attempts=1) for item in images]

    def done(settled: list[Outcome]) -> None:
        ledger.record_many(settled)
        outcomes.extend(settled)
        if progress is not None:
            for outcome in settled:
                progress.finished(outcome)

    def finished(unit: Unit, settled: list[Outcome]) -> bool:
        if meter is not None:
            for item, outcome in zip(units_of(unit), settled, strict=True):
                meter.finished(item, outcome.status == "copied")
        done(settled)
        return all(outcome.status in ("copied", "skipped") for outcome in settled)

    # Ctrl-C / SIGTERM: running copies end (without retrying), and what never started is said.
    try:
        scheduler.run(
            work,
            workers=concurrency,
            finished=finished,
            stopped=lambda unit: done([_interrupted(run_id, item) for item in units_of(unit)]),
            stop=stop,
        )
    finally:
        if meter is not None:
            meter.close()
    return outcomes


def _interrupted(run_id: str, item: WorkItem) -> Outcome:
    return item.settled(
        run_id, "interrupted", error="the run was stopped before this image was copied; the next run re-plans it"
    )


def previous_outcomes(settings: Settings, ledger: Ledger) -> dict[str, Outcome] | None:
    """What the planner needs from the ledger: only with `includeUntagged: false` (see plan())."""
    if not settings.copies_subset:
        return None
    return {o.source: o for o in ledger.latest()}


def run(
    context: TransferContext,
    ledger: Ledger,
    *,
    force: bool = False,
    concurrency: int | None = None,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> RunResult:
    """One incremental run. Planning errors (bad input) raise before anything is recorded."""
    run_id = run_id or new_run_id()
    held = ledger.busy()
    if held:
        # Before planning, which takes seconds to minutes: a busy ledger is known at once.
        raise LedgerBusyError(held)
    previous = previous_outcomes(context.settings, ledger)
    items = plan(context.settings, context.source, context.destination, force=force, previous=previous)
    recovered = ledger.start_run(run_id, now())
    log.info("run %s: %d images planned, %d to copy", run_id, len(items), sum(1 for i in items if i.action == "copy"))
    if progress is not None:
        progress.planned(items)
    outcomes: list[Outcome] = []
    state = "finished"
    try:
        skipped = [item.skipped(run_id) for item in items if item.action == "skip"]
        # A no-op run is mostly this: one SQLite transaction, parallel DynamoDB writes.
        ledger.record_many(skipped)
        for outcome in skipped:
            outcomes.append(outcome)
            if progress is not None:
                progress.finished(outcome)
        to_copy = [i for i in items if i.action == "copy"]
        outcomes += copy_items(
            context, ledger, run_id, to_copy, concurrency=concurrency or context.settings.concurrency, progress=progress
        )
    except BaseException:
        state = "interrupted"
        raise
    finally:
        summary = ledger.finish_run(run_id, now(), state)
        if progress is not None:
            progress.close()
    order = {i.source: n for n, i in enumerate(items)}
    outcomes.sort(key=lambda o: order.get(o.source, 0))
    return RunResult(run_id=run_id, items=items, outcomes=outcomes, summary=summary, recovered=recovered)
