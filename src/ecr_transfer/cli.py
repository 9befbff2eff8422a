"""`ecr-transfer`: the pipeline on one machine. Thin glue over ecr_transfer.pipeline.

Exit codes: 0 nothing failed, 1 at least one image failed, 2 bad configuration or input.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from ecr_transfer import __version__, envvars
from ecr_transfer.errors import ConfigError
from ecr_transfer.ledger import DEFAULT_LEDGER, LedgerBusyError, open_ledger

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecr-transfer", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"ecr-transfer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    ledger_help = f"ledger: a SQLite path or dynamodb://TABLE (default ${envvars.LEDGER} or {DEFAULT_LEDGER})"

    run = sub.add_parser("run", help="transfer what changed, record every outcome")
    run.add_argument("--config", required=True, help="settings YAML (Data Transfer Hub parameter names)")
    run.add_argument("--ledger", help=ledger_help)
    run.add_argument("--concurrency", type=int, help="images copied at once (default: concurrency setting, 10)")
    run.add_argument("--force", action="store_true", help="copy even images whose digest already matches")
    run.add_argument("--dry-run", action="store_true", help="plan only: print what would be copied")
    run.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    plan = sub.add_parser("plan", help="what would be copied and why, without copying")
    plan.add_argument("--config", required=True)
    plan.add_argument("--force", action="store_true")
    plan.add_argument("--json", action="store_true")

    status = sub.add_parser("status", help="outcomes recorded in the ledger")
    status.add_argument("--ledger", help=ledger_help)
    status.add_argument("--run-id", help="one run's outcomes (default: the latest outcome of every image)")
    status.add_argument("--runs", action="store_true", help="list recent runs")
    status.add_argument("--json", action="store_true")

    demo = sub.add_parser("demo", help="two local registries, sample images, two runs, the ledger")
    demo.add_argument("--workdir", help="where registries, images and the ledger live (default: a temp dir)")
    return parser


def _plan(args: argparse.Namespace) -> int:
    from ecr_transfer import report
    from ecr_transfer.context import build_context
    from ecr_transfer.pipeline import new_run_id
    from ecr_transfer.planner import plan
    from ecr_transfer.selection import select
    from ecr_transfer.settings import load_yaml

    settings = load_yaml(args.config)
    context = build_context(settings)
    try:
        selection = select(settings, context.source)
        items = plan(settings, context.source, context.destination, force=args.force, selection=selection)
    finally:
        context.close()
    if args.json:
        report.dump(report.plan_json(new_run_id(), items, selection))
    else:
        report.plan_table(items, selection=selection)
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _plan(args)
    from dataclasses import replace

    from ecr_transfer import report
    from ecr_transfer.context import build_context
    from ecr_transfer.model import FAILED_STATUSES
    from ecr_transfer.pipeline import run
    from ecr_transfer.settings import load_yaml

    settings = load_yaml(args.config)
    if args.concurrency is not None:
        if not 1 <= args.concurrency <= 100:
            raise ConfigError(f"--concurrency must be between 1 and 100; got {args.concurrency}")
        settings = replace(settings, concurrency=args.concurrency)
    started = time.monotonic()
    context = build_context(settings)
    ledger = open_ledger(args.ledger or os.environ.get(envvars.LEDGER))
    try:
        progress = None if args.json else report.TerminalProgress()
        result = run(context, ledger, force=args.force, progress=progress)
    finally:
        context.close()
        ledger.close()
    for earlier in result.recovered:
        print(f"note: earlier run {earlier.run_id} was {earlier.note}", file=sys.stderr)
    if args.json:
        report.dump(report.run_json(result.run_id, result.outcomes))
    else:
        report.outcome_table(result.outcomes)
        print(report.summary_line(result.run_id, result.outcomes, time.monotonic() - started))
    return EXIT_FAILED if any(o.status in FAILED_STATUSES for o in result.outcomes) else EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from ecr_transfer import report

    ledger = open_ledger(args.ledger or os.environ.get(envvars.LEDGER))
    try:
        if args.runs:
            runs = ledger.runs()
            if args.json:
                report.dump({"runs": [r.to_dict() for r in runs]})
            else:
                report.runs_table(runs)
            return EXIT_OK
        outcomes = ledger.outcomes(args.run_id) if args.run_id else ledger.latest()
    finally:
        ledger.close()
    if args.run_id and not outcomes:
        raise ConfigError(f"no outcomes recorded for run {args.run_id!r}", source="--run-id")
    if args.json:
        report.dump(report.run_json(args.run_id or "latest", outcomes))
    else:
        report.outcome_table(outcomes)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from ecr_transfer.demo import run_demo

    return run_demo(main, args.workdir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers = {"run": _run, "plan": _plan, "status": _status, "demo": _demo}
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return int(handlers[args.command](args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LedgerBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (kill, systemd, docker stop) stops a run as Ctrl-C does: running copies end, the
    # rest are recorded interrupted and the ledger lease is released. Python's default would
    # die on the spot, leaving the lease and every in-flight image for the next run to recover.
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
