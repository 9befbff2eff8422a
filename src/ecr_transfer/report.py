"""What users see: the --json contract, a live progress line and the closing summary table."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from ecr_transfer.model import FAILED_STATUSES, Outcome, RunSummary, WorkItem, counts
from ecr_transfer.referrers import LeftOut
from ecr_transfer.selection import Dropped, EntryCounts, Selection


def _json_status(status: str) -> str:
    return "failed" if status in FAILED_STATUSES else status


def run_json(run_id: str, outcomes: list[Outcome], *, history: bool = False) -> dict[str, Any]:
    """`history`: each outcome's run and end time too (status: the latest outcome may be old)."""
    return {
        "run_id": run_id,
        "counts": counts(outcomes),
        "items": [
            {
                "source": o.source,
                "target": o.target,
                "status": _json_status(o.status),
                "source_digest": o.source_digest,
                "target_digest": o.target_digest,
                "error": o.error,
                **({"run_id": o.run_id, "ended_at": o.ended_at or o.started_at} if history else {}),
            }
            for o in outcomes
        ],
    }


def interrupted(run_id: str, outcomes: list[Outcome], elapsed: float, *, as_json: bool, verbose: int) -> None:
    """Ctrl-C: the partial run as recorded, then the summary, for a person or a script."""
    if as_json:
        doc = run_json(run_id, outcomes)
        doc.update(error="interrupted: the next run re-plans what was not copied", exit_code=130)
        dump(doc)
        return
    outcome_table(outcomes, verbose=verbose > 0)
    print(summary_line(run_id, outcomes, elapsed) + " (interrupted)")


def with_progress(run: RunSummary, so_far: dict[str, int]) -> RunSummary:
    """A running run's summary with what it has recorded so far (its counts are written at the end)."""
    busy = so_far["planned"] - so_far["copied"] - so_far["skipped"] - so_far["failed"]
    note = f"{busy} copying now" + (f"; {run.note}" if run.note else "")
    return replace(
        run, planned=so_far["planned"], copied=so_far["copied"], skipped=so_far["skipped"], failed=so_far["failed"],
        note=note,
    )  # fmt: skip


def plan_json(
    run_id: str, items: list[WorkItem], selection: Selection | None = None, left_out: Sequence[LeftOut] = ()
) -> dict[str, Any]:
    copy = sum(1 for i in items if i.action == "copy")
    entries = selection.entries if selection else ()
    filtered: list[Dropped | LeftOut] = [*(selection.filtered if selection else ()), *left_out]
    return {
        "run_id": run_id,
        "counts": {"planned": len(items), "copied": 0, "skipped": len(items) - copy, "failed": 0, "copy": copy},
        "items": [
            {
                "source": i.source,
                "target": i.target,
                "status": i.action,
                "source_digest": i.source_digest,
                "target_digest": i.target_digest,
                "error": i.error,
                "reason": i.reason,
            }
            for i in items
        ],
        "selection": [
            {"entry": e.entry, "listed": e.listed, "after": [{"filter": s.key, "kept": s.kept} for s in e.steps]}
            for e in entries
        ],
        "filtered": [{"source": d.source, "reason": d.reason} for d in filtered],
    }


def dump(doc: dict[str, Any], out: TextIO | None = None) -> None:
    """The --json document: one top-level key a line, and one line per item of a list.

    Thousands of items are the usual size of a run; `json.dumps(indent=...)` runs Python's pure
    encoder (the C one takes no indent), which cost more CPU than a no-op's whole ledger work.
    A line per item also keeps `grep` and `jq -c` friendly.
    """
    out = out or sys.stdout
    fields = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            inner = ",\n    ".join(json.dumps(v) for v in value)
            fields.append(f"  {json.dumps(key)}: [\n    {inner}\n  ]")
        else:
            fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    out.write("{\n" + ",\n".join(fields) + "\n}\n" if fields else "{}\n")


def human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


class TerminalProgress:
    """One self-rewriting status line on a terminal; silent when output is not a terminal.

    On a terminal the line is redrawn every `tick` seconds, not only when an image ends (a long
    copy used to freeze it), and shows the bytes that have landed at the destination so far.
    """

    def __init__(self, out: TextIO | None = None, *, tick: float = 0.5) -> None:
        self._out: TextIO = out if out is not None else sys.stderr
        self._live = self._out.isatty()
        self.counts_bytes = self._live
        self._total = 0
        self._counts: Counter[str] = Counter()
        self._bytes = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self._live:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True, name="progress")
            self._ticker.start()

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self._draw()

    def planned(self, items: list[WorkItem]) -> None:
        self._total = len(items)
        copy = sum(1 for i in items if i.action == "copy")
        with self._lock:
            self._out.write(f"planned {len(items)} images: {copy} to copy, {len(items) - copy} already in sync\n")
        self._draw()

    def landed(self, size: int) -> None:
        with self._lock:
            self._bytes += size
        self._draw()

    def finished(self, outcome: Outcome) -> None:
        self._counts[_json_status(outcome.status)] += 1
        if outcome.status in FAILED_STATUSES and not self._live:
            # An interrupted image did not fail: it was stopped, and the next run re-plans it.
            with self._lock:
                self._out.write(f"{outcome.status.upper()} {outcome.source}: {outcome.error}\n")
        self._draw()

    def _draw(self) -> None:
        if not self._live or self._stop.is_set():
            return
        with self._lock:
            done = sum(self._counts.values())
            c = self._counts
            self._out.write(
                f"\r[{done}/{self._total}] copied {c['copied']}  skipped {c['skipped']}  failed {c['failed']}  "
                f"{human_bytes(self._bytes)}  {time.monotonic() - self._started:.1f}s\033[K"
            )
            self._out.flush()

    def close(self) -> None:
        if self._live:
            self._draw()
            self._stop.set()
            if self._ticker is not None:
                self._ticker.join(timeout=2)
            self._out.write("\n")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if n == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _short(digest: str | None) -> str:
    return digest[:19] if digest else "-"


def outcome_table(
    outcomes: list[Outcome], out: TextIO | None = None, *, verbose: bool = False, history: bool = False
) -> None:
    """One row per image that changed or failed; unchanged ones in one line unless `verbose`.

    `history` adds each outcome's run and time: the latest outcome of an image may be months old
    (a source tag deleted since still reads `copied`).
    """
    out = out or sys.stdout
    if not outcomes:
        out.write("no images\n")
        return
    unchanged = [o for o in outcomes if o.status == "skipped"]
    shown = outcomes if verbose else [o for o in outcomes if o.status != "skipped"]
    rows = [["STATUS", "SOURCE", "TARGET", "DIGEST", "TRIES", *(["RUN", "AT"] if history else []), "DETAIL"]]
    for o in shown:
        detail = o.error or o.reason or ""
        when = [o.run_id, o.ended_at or o.started_at or "-"] if history else []
        digest = _short(o.target_digest or o.source_digest)
        rows.append([o.status, o.source, o.target, digest, str(o.attempts), *when, detail])
    if len(rows) > 1:
        _table(rows, out)
    if unchanged and not verbose:
        out.write(f"{len(unchanged)} unchanged (the destination has the same digest); -v lists them\n")


def entry_line(entry: EntryCounts) -> str:
    """`nginx:ALL_TAGS: 45 tags; tagInclude 45 -> 30, tagSemver 30 -> 12`: what each filter left."""
    steps, before = [], entry.listed
    for step in entry.steps:
        steps.append(f"{step.key} {before} -> {step.kept}")
        before = step.kept
    return f"{entry.entry}: {entry.listed} tags; " + ", ".join(steps)


def plan_table(
    items: list[WorkItem],
    out: TextIO | None = None,
    selection: Selection | None = None,
    left_out: Sequence[LeftOut] = (),
) -> None:
    out = out or sys.stdout
    if left_out:
        out.write(f"{len(left_out)} referrers left out by referrerTypes (plan --json lists each with its reason)\n")
    if selection is not None and selection.entries:
        for entry in selection.entries:
            out.write(entry_line(entry) + "\n")
        if selection.filtered:
            out.write(f"{len(selection.filtered)} tags filtered out (plan --json lists each with its reason)\n")
        out.write("\n")
    if not items:
        out.write("no images selected\n")
        return
    rows = [["ACTION", "SOURCE", "TARGET", "SOURCE DIGEST", "REASON"]]
    rows += [[i.action, i.source, i.target, _short(i.source_digest), i.reason] for i in items]
    _table(rows, out)


def summary_line(run_id: str, outcomes: list[Outcome], elapsed: float) -> str:
    c = counts(outcomes)
    stopped = sum(1 for o in outcomes if o.status == "interrupted")
    failed = f"{c['failed'] - stopped} failed" + (f", {stopped} interrupted" if stopped else "")
    done = f"{c['planned']} planned, {c['copied']} copied, {c['skipped']} skipped, {failed}"
    return f"run {run_id}: {done} in {elapsed:.1f}s"


def runs_table(runs: list[RunSummary], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    rows = [["RUN", "STARTED", "STATE", "PLANNED", "COPIED", "SKIPPED", "FAILED", "NOTE"]]
    for r in runs:
        rows.append(
            [
                r.run_id,
                r.started_at,
                r.state,
                str(r.planned),
                str(r.copied),
                str(r.skipped),
                str(r.failed),
                r.note or "",
            ]
        )
    _table(rows, out)
