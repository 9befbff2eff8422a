"""`ecr-transfer`: the pipeline on one machine. Thin glue over ecr_transfer.pipeline.

Exit codes: 0 nothing failed, 1 at least one image failed, 2 bad configuration or input, 130 interrupted.
The parser's texts are written for users (`--help`); this docstring is for developers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence

from ecr_transfer import __version__, envvars
from ecr_transfer.errors import ConfigError
from ecr_transfer.ledger import DEFAULT_LEDGER, LedgerBusyError, ledger_exists, open_ledger

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def report_error(error: str, code: int, problems: list[str], source: str | None = None) -> None:
    """The one JSON object of --json when there is no run to show (a script reads `exit_code`)."""
    doc = {"error": error, "exit_code": code, "source": source, "problems": problems}
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecr-transfer",
        description="Copy container images into Amazon ECR (or any registry) incrementally: only what changed.",
        epilog="Exit codes: 0 nothing failed, 1 at least one image failed, 2 bad configuration or input "
        "(nothing copied), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ecr-transfer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more output: every image, then -vv logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ledger_help = f"ledger: a SQLite path or dynamodb://TABLE (default ${envvars.LEDGER} or {DEFAULT_LEDGER})"
    config_help = "settings YAML (Data Transfer Hub parameter names: srcImageList, destRegion...)"
    json_help = "print one JSON object on stdout (also on errors and Ctrl-C)"

    run = sub.add_parser("run", help="transfer what changed, record every outcome")
    run.add_argument("--config", required=True, help=config_help)
    run.add_argument("--ledger", help=ledger_help)
    run.add_argument("--concurrency", type=int, help="images copied at once (default: concurrency setting, 10)")
    run.add_argument("--force", action="store_true", help="copy even images whose digest already matches")
    run.add_argument("--dry-run", action="store_true", help="plan only: print what would be copied")
    run.add_argument("--json", action="store_true", help=json_help)

    plan = sub.add_parser(
        "plan", help="what would be copied and why, without copying", epilog="Exit code 1: a source lookup failed."
    )
    plan.add_argument("--config", required=True, help=config_help)
    plan.add_argument("--ledger", help=f"{ledger_help}; read only, to plan as `run` would")
    plan.add_argument("--force", action="store_true", help="plan to copy even images whose digest already matches")
    plan.add_argument("--json", action="store_true", help=json_help)

    status = sub.add_parser("status", help="outcomes recorded in the ledger")
    status.add_argument("--ledger", help=ledger_help)
    status.add_argument("--run-id", help="one run's outcomes (default: the latest outcome of every image)")
    status.add_argument("--runs", action="store_true", help="list recent runs, with the progress of a running one")
    status.add_argument("--json", action="store_true", help=json_help)

    demo = sub.add_parser("demo", help="two local registries, sample images, two runs, the ledger")
    demo.add_argument("--workdir", help="where registries, images and the ledger live (default: a temp dir)")
    return parser


def _ledger_url(args: argparse.Namespace) -> str | None:
    return str(args.ledger or os.environ.get(envvars.LEDGER) or "") or None


def _plan(args: argparse.Namespace) -> int:
    from ecr_transfer import report
    from ecr_transfer.context import build_context
    from ecr_transfer.pipeline import new_run_id, previous_outcomes
    from ecr_transfer.planner import lookup_failed, plan
    from ecr_transfer.referrers import LeftOut
    from ecr_transfer.selection import select
    from ecr_transfer.settings import load_yaml

    settings = load_yaml(args.config)
    # The ledger matters with includeUntagged: false (see pipeline.previous_outcomes), as in `run`.
    # A plan never creates one: a ledger named but missing is an error, the default one absent is none.
    url = _ledger_url(args)
    named = getattr(args, "ledger", None) is not None or envvars.LEDGER in os.environ
    wanted = not settings.include_untagged and (named or ledger_exists(url))
    ledger = open_ledger(url, create=False) if wanted else None
    context = build_context(settings)
    try:
        previous = previous_outcomes(settings, ledger) if ledger is not None else None
        selection = select(settings, context.source)
        left_out: list[LeftOut] = []
        items = plan(
            settings, context.source, context.destination, force=args.force, selection=selection, previous=previous,
            left_out=left_out,
        )  # fmt: skip
    finally:
        context.close()
        if ledger is not None:
            ledger.close()
    if args.json:
        report.dump(report.plan_json(new_run_id(), items, selection, left_out))
    else:
        report.plan_table(items, selection=selection, left_out=left_out)
    return EXIT_FAILED if any(lookup_failed(i) for i in items) else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    if args.dry_run:
        return _plan(args)
    from dataclasses import replace

    from ecr_transfer import report
    from ecr_transfer.context import build_context
    from ecr_transfer.model import FAILED_STATUSES
    from ecr_transfer.pipeline import new_run_id, run
    from ecr_transfer.settings import load_yaml

    settings = load_yaml(args.config)
    if args.concurrency is not None:
        if not 1 <= args.concurrency <= 100:
            raise ConfigError(f"--concurrency must be between 1 and 100; got {args.concurrency}")
        settings = replace(settings, concurrency=args.concurrency)
    started = time.monotonic()
    ledger = open_ledger(_ledger_url(args))
    run_id = new_run_id()
    try:
        held = ledger.busy()
        if held:  # before the ECR sessions and the plan, which take seconds to minutes
            raise LedgerBusyError(held)
        context = build_context(settings)
        try:
            progress = None if args.json else report.TerminalProgress()
            result = run(context, ledger, force=args.force, progress=progress, run_id=run_id)
        finally:
            context.close()
    except KeyboardInterrupt:
        # The partial run, as the ledger recorded it (the running copies ended, the rest interrupted).
        outcomes = ledger.outcomes(run_id)
        print("interrupted", file=sys.stderr)
        report.interrupted(run_id, outcomes, time.monotonic() - started, as_json=args.json, verbose=args.verbose)
        return EXIT_INTERRUPTED
    finally:
        ledger.close()
    for earlier in result.recovered:
        print(f"note: earlier run {earlier.run_id} was {earlier.note}", file=sys.stderr)
    if args.json:
        report.dump(report.run_json(result.run_id, result.outcomes))
    else:
        report.outcome_table(result.outcomes, verbose=args.verbose > 0)
        print(report.summary_line(result.run_id, result.outcomes, time.monotonic() - started))
    return EXIT_FAILED if any(o.status in FAILED_STATUSES for o in result.outcomes) else EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from ecr_transfer import report
    from ecr_transfer.model import counts

    # Reading only: a mistyped path is an error, not a new empty ledger.
    ledger = open_ledger(_ledger_url(args), create=False)
    try:
        if args.runs:
            runs = ledger.runs()
            # A running run's counts are written when it ends: count what it recorded so far.
            runs = [report.with_progress(r, counts(ledger.outcomes(r.run_id))) if r.state == "running" else r
                    for r in runs]  # fmt: skip
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
        report.dump(report.run_json(args.run_id or "latest", outcomes, history=not args.run_id))
    else:
        report.outcome_table(outcomes, verbose=True, history=not args.run_id)
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
    as_json = bool(getattr(args, "json", False))
    try:
        return int(handlers[args.command](args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            report_error("bad configuration or input: nothing was copied", EXIT_CONFIG, exc.problems, exc.source)
        return EXIT_CONFIG
    except LedgerBusyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            report_error("the ledger is in use by another run: nothing was copied", EXIT_CONFIG, [str(exc)])
        return EXIT_CONFIG
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if as_json:
            report_error("interrupted before anything was copied", EXIT_INTERRUPTED, [])
        return EXIT_INTERRUPTED
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
