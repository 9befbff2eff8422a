"""The lister step: open the run, plan it, record the skips, write the copy work list to S3.

Skips never travel further: an incremental run in which nothing changed returns `to_copy: 0`
and the state machine ends without starting a single Fargate task. A small push run is marked
`fast`: its batches go to the copier image in Lambda (cloud.fast_copy). Errors raise with their
own class names (ConfigError, TransientError, LedgerBusyError), which the state machine's Retry
and Catch match on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ecr_transfer import envvars
from ecr_transfer.cloud import batch, fast_copy
from ecr_transfer.context import TransferContext, build_context
from ecr_transfer.ledger import Ledger, open_ledger
from ecr_transfer.model import RunSummary, now
from ecr_transfer.pipeline import copy_order, previous_outcomes
from ecr_transfer.planner import plan
from ecr_transfer.pushes import from_execution_input, latest_per_tag, select_pushed, stamped
from ecr_transfer.settings import Settings, load_env

log = logging.getLogger("ecr_transfer.lister")
ContextBuilder = Callable[[Settings, Mapping[str, str]], TransferContext]


def _build(settings: Settings, environ: Mapping[str, str]) -> TransferContext:
    return build_context(settings, environ=environ)


def start_once(ledger: Ledger, run_id: str, holder: str) -> list[RunSummary]:
    """Open the run unless this very run already holds it.

    Step Functions retries the lister after a transient error; the retry is the same run and
    must not be told that the ledger is busy with itself.
    """
    if any(r.run_id == run_id and r.state == "running" for r in ledger.runs(limit=5)):
        return []
    return ledger.start_run(run_id, now(), holder)


def list_images(
    event: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    image_list_loader: Callable[[str], str] | None = None,
    s3: Any | None = None,
    ledger: Ledger | None = None,
    build: ContextBuilder = _build,
) -> dict[str, Any]:
    """Returns the small payload the state machine carries: counts, bucket and keys."""
    env = os.environ if environ is None else environ
    run_id = str(event["run_id"])
    holder = str(event.get("execution_arn") or run_id)
    execution_input = event.get("input") or {}
    if not isinstance(execution_input, dict):
        execution_input = {}
    force = bool(execution_input.get("force", False))
    bucket = env[batch.WORK_BUCKET]

    # The run is opened before the settings are read, so that a configuration error is recorded
    # against this run (by the state machine's Catch) instead of vanishing.
    owned = ledger is None
    ledger = open_ledger(env.get(envvars.LEDGER)) if ledger is None else ledger
    try:
        recovered = start_once(ledger, run_id, holder)
        settings = load_env(env, image_list_loader)
        pushes = from_execution_input(execution_input)
        context = build(settings, env)
        try:
            # A push-triggered run plans the pushed images only, if the selection has them.
            selection = None if pushes is None else select_pushed(settings, context.source, latest_per_tag(pushes))
            items = plan(
                settings,
                context.source,
                context.destination,
                force=force,
                previous=previous_outcomes(settings, ledger),
                selection=selection,
            )
            # From the listing the push run just made (ECR's imageSizeInBytes): no request of its own.
            known_sizes = (
                {} if pushes is None else fast_copy.sizes(context.source, [i for i in items if i.action == "copy"])
            )
        finally:
            context.close()
        skips = [i for i in items if i.action == "skip"]
        copies = copy_order(i for i in items if i.action == "copy")
        if pushes is not None:
            copies = stamped(copies, pushes)
        ledger.record_many([item.skipped(run_id) for item in skips])
    finally:
        if owned:
            # Stops the lease heartbeat: the recorder's writes keep the lease alive from here on.
            ledger.close()
    fast, why = fast_copy.choose(copies, pushed=pushes is not None, known_sizes=known_sizes, environ=env)
    log.info("run %s copies in %s", run_id, why)
    key = batch.work_list_key(run_id)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=batch.work_list_body(copies), ContentType="application/json")
    return {
        "run_id": run_id,
        "bucket": bucket,
        "work_list_key": key,
        "outcome_prefix": batch.outcome_prefix(run_id),
        "planned": len(items),
        "to_copy": len(copies),
        "skipped": len(skips),
        "concurrency": settings.concurrency,
        "batch_size": batch.batch_size(len(copies), settings.concurrency),
        "fast": fast,
        "force": force,
        "trigger": "push" if pushes is not None else str(execution_input.get("trigger") or "schedule"),
        "recovered": [r.run_id for r in recovered],
    }
