"""The Fargate copier task: copy one batch, write its outcomes to S3, exit.

Exit codes are what Step Functions sees (runTask.sync fails the state on a non-zero exit):
  0  every item has an outcome in S3, including the items that failed (they are outcomes,
     recorded and reported; retrying the whole batch would not help them);
  2  the batch itself is unusable (missing/invalid environment): retrying cannot help either,
     but the Catch path still records every item as failed with this cause;
  1  anything else (S3 unreachable, a transient error while setting up): worth a retry;
     also a batch stopped by SIGTERM (ECS StopTask, Fargate Spot, scale-in): its outcomes are
     written first (finished images as they ended, the rest "interrupted"), and the retry
     finishes the batch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ecr_transfer import envvars
from ecr_transfer import metrics as measures
from ecr_transfer.blobsched import image_blobs
from ecr_transfer.cloud import batch, emf
from ecr_transfer.cloud.recorder import failed_outcome
from ecr_transfer.context import TransferContext, build_context
from ecr_transfer.copier import Copier
from ecr_transfer.errors import ConfigError, PermanentError
from ecr_transfer.model import Outcome, WorkItem
from ecr_transfer.pipeline import CopierFactory, copy_items
from ecr_transfer.platforms import platform_copies
from ecr_transfer.registry.client import RegistryClients
from ecr_transfer.settings import Settings, env_count, load_env

log = logging.getLogger("ecr_transfer.copier_task")

ContextBuilder = Callable[[Settings, Mapping[str, str]], TransferContext]
DEFAULT_COPIES_PER_TASK = 4
"""skopeo processes one task runs at once (its images, or the platforms of one index)."""


def copies_per_task(environ: Mapping[str, str]) -> int:
    return env_count(envvars.COPIES_PER_TASK, DEFAULT_COPIES_PER_TASK, environ)


class _Collect:
    """The task keeps no ledger: its outcomes go to S3 once the batch is done (or stopped)."""

    def __init__(self) -> None:
        self.final: dict[tuple[str, str], Outcome] = {}

    def record(self, outcome: Outcome) -> None:
        if outcome.status != "in_progress":
            self.final[(outcome.source, outcome.target)] = outcome

    def record_many(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            self.record(outcome)


class BatchInterrupted(Exception):
    """The task was told to stop mid-batch; `outcomes` holds one outcome per item all the same."""

    def __init__(self, outcomes: list[Outcome]) -> None:
        super().__init__("the batch was stopped")
        self.outcomes = outcomes


class _LogEach:
    counts_bytes = False  # a log line per image is enough in the cloud: no HEADs to measure bytes

    def planned(self, items: list[WorkItem]) -> None:
        pass

    def landed(self, size: int) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        error = f": {outcome.error}" if outcome.error else f" ({outcome.target_digest})"
        log.info("%s %s -> %s%s", outcome.status, outcome.source, outcome.target, error)

    def close(self) -> None:
        pass


def default_build(settings: Settings, environ: Mapping[str, str]) -> TransferContext:
    return build_context(settings, environ=environ)


# Answers that every retry of the batch would get again: the batch fails once, saying why.
_PERMANENT_SSM_ERRORS = {"AccessDeniedException", "ParameterNotFound"}


def ssm_loader(name: str) -> str:
    """An SSM parameter the stack names (the selected list, the registry CAs)."""
    import boto3
    from botocore.exceptions import ClientError

    try:
        value = boto3.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") not in _PERMANENT_SSM_ERRORS:
            raise
        raise ConfigError(f"SSM parameter {name}: {error.get('Code')}: {error.get('Message')}") from None
    return str(value)


def copied_sizes(clients: RegistryClients, items: list[WorkItem], outcomes: list[Outcome]) -> dict[str, int]:
    """Source reference -> bytes of its config and layer blobs, for the copied images whose size is known.

    The registry client keeps the digest-addressed manifests the blob schedule has read, so this
    mostly costs nothing; Docker Hub images are not inspected (a manifest GET counts as a pull).
    """
    landed = {o.source for o in outcomes if o.status == "copied"}
    sizes: dict[str, int] = {}
    for item in items:
        if item.source in landed:
            try:
                blobs = image_blobs(clients, item)
            except Exception:  # a size is worth no failure of the batch
                log.warning("%s: size not known", item.source, exc_info=True)
                continue
            if blobs:
                sizes[item.source] = sum(blobs.values())
    return sizes


def copy_batch(
    items: list[WorkItem],
    environ: Mapping[str, str],
    run_id: str,
    *,
    build: ContextBuilder = default_build,
    image_list_loader: Callable[[str], str] | None = ssm_loader,
    copier_factory: CopierFactory = Copier,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """One outcome per item, whatever happens to a single image; its metrics on stdout (EMF).

    Fargate's entrypoint and the Lambda fast path (ecr_transfer.cloud.fast_copy) both copy here;
    `stop` is the fast path's: set, no new copy starts (see pipeline.copy_items)."""
    emf.publish(measures.batch_started(in_lambda=envvars.LAMBDA_FUNCTION_NAME in environ), environ, run_id=run_id)
    try:
        settings = load_env(environ, image_list_loader)
        copies = copies_per_task(environ)
        platform_copies(environ)  # a bad knob fails the batch here, with its name, not mid-copy
        context = build(settings, environ)
    except (ConfigError, PermanentError) as exc:
        # Every image would fail the same way: say why on each of them, once.
        log.error("cannot set up the copy: %s", exc)
        return [failed_outcome(item, run_id, f"cannot set up the copy: {exc}") for item in items]
    sink = _Collect()
    try:
        outcomes = copy_items(
            context,
            sink,
            run_id,
            items,
            concurrency=copies,
            progress=_LogEach(),
            copier_factory=copier_factory,
            stop=stop,
        )
        emf.publish(
            measures.copied(items, outcomes, copied_sizes(context.clients, items, outcomes)), environ, run_id=run_id
        )
        return outcomes
    except KeyboardInterrupt:
        # copy_items has settled every item (finished, or "interrupted") before re-raising.
        settled = [sink.final[(i.source, i.target)] for i in items if (i.source, i.target) in sink.final]
        # No size lookups now: the stop timeout is for writing the outcomes.
        emf.publish(measures.copied(items, settled, {}), environ, run_id=run_id)
        raise BatchInterrupted(settled) from None
    finally:
        context.close()


def write_outcomes(s3: Any | None, bucket: str, prefix: str, items: list[WorkItem], outcomes: list[Outcome]) -> str:
    """The batch's outcomes where the recorder looks for them (batch.outcome_key); returns the key."""
    key = batch.outcome_key(prefix, items)
    if s3 is None:
        import boto3

        s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=batch.outcomes_body(outcomes), ContentType="application/json")
    return key


def run_batch(
    environ: Mapping[str, str] | None = None,
    *,
    s3: Any | None = None,
    build: ContextBuilder = default_build,
    image_list_loader: Callable[[str], str] | None = ssm_loader,
    copier_factory: CopierFactory = Copier,
) -> int:
    env = os.environ if environ is None else environ
    missing = [n for n in (batch.RUN_ID, batch.WORK_BUCKET, batch.OUTCOME_PREFIX, batch.WORK_ITEMS) if not env.get(n)]
    if missing:
        log.error("missing environment: %s (set by the state machine per batch)", ", ".join(missing))
        return 2
    try:
        items = batch.parse_items(env[batch.WORK_ITEMS])
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    run_id = env[batch.RUN_ID]
    log.info("run %s: copying a batch of %d image(s)", run_id, len(items))
    interrupted = False
    try:
        outcomes = copy_batch(
            items, env, run_id, build=build, image_list_loader=image_list_loader, copier_factory=copier_factory
        )
    except BatchInterrupted as stopped:
        outcomes, interrupted = stopped.outcomes, True
    key = write_outcomes(s3, env[batch.WORK_BUCKET], env[batch.OUTCOME_PREFIX], items, outcomes)
    failed = sum(1 for o in outcomes if o.status not in ("copied", "skipped"))
    if interrupted:
        log.warning("run %s: batch stopped, %d image(s) not finished; outcomes in %s", run_id, failed, key)
        return 1
    log.info("run %s: batch done, %d copied, %d failed; outcomes in %s", run_id, len(outcomes) - failed, failed, key)
    return 0


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # ECS stops a task with SIGTERM to the container's first process only, then SIGKILL after the
    # stop timeout. The skopeo processes would go on copying (and hold up the stop) while we wait
    # for them: end them now, so the outcomes reach S3 within the timeout.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.killpg(os.getpgrp(), signal.SIGTERM)
    raise KeyboardInterrupt


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # Our own process group, so that the stop reaches our skopeo children and nothing else
    # (as PID 1 in the container it already leads one: setpgid then fails, harmlessly).
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return run_batch()
    except Exception:
        log.exception("the batch could not be handled; Step Functions will retry it")
        return 1
