"""The Lambda fast path: a push run's small batches copied by the copier image in Lambda.

A Fargate task takes tens of seconds to start and pull its image before it copies anything; a
Lambda function of the same image is warm or starts in a few seconds. So the lister marks a push
run `fast` when it is small (`choose`), the state machine sends each of its batches to the
CopierImageFunction instead of RunTask, and `handle` copies the batch with the same
`copier_task.copy_batch` Fargate runs: same copy_items, same outcome object in S3, same metrics.

Lambda stops an invocation at 15 minutes at most, and a killed invocation writes nothing. So
the handler keeps its own clock: with less than START_RESERVE left it starts no new copy, with
END_RESERVE left it ends the running ones (skopeo.deadline), and it writes every outcome before
it answers. An answer with `finished: false` (a copy interrupted, or a batch it would not take)
makes the state machine copy the batch on Fargate after all: nothing is lost, it is only slower.

Errors, as Step Functions sees them: BatchRefused (the payload itself is unusable, the batch is
recorded failed, as for a Fargate task's exit code 2); anything else fails the invocation and
the state machine falls back to Fargate.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from ecr_transfer import envvars, skopeo
from ecr_transfer.cloud import batch, copier_task
from ecr_transfer.copier import Copier
from ecr_transfer.errors import ConfigError
from ecr_transfer.model import Outcome, WorkItem
from ecr_transfer.pipeline import CopierFactory
from ecr_transfer.references import ImageRef, parse_reference

log = logging.getLogger("ecr_transfer.fast_copy")

MAX_IMAGES = 10
"""Images a push run may have to copy and still go to Lambda (a CI burst of a few tags does)."""
MAX_BYTES = 2 * 1024**3
"""Known bytes (ECR's imageSizeInBytes) a fast run may copy: ~1 minute at Lambda's network speed."""
START_RESERVE_SECONDS = 300.0
"""No new copy starts with less time left: a normal image copies in far less."""
END_RESERVE_SECONDS = 45.0
"""Running copies are ended with this much left: writing the outcomes and metrics needs a few seconds."""


class BatchRefused(Exception):
    """The invocation's payload is not a batch: no retry and no Fargate task could copy it."""


@runtime_checkable
class KnowsSizes(Protocol):
    """A source catalog that knows image sizes from its listing (ecr.catalog.EcrCatalog)."""

    def image_size(self, ref: ImageRef) -> int | None: ...


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(envvars.FAST_PATH, "false").strip().lower() == "true"


def sizes(source: object, copies: Sequence[WorkItem]) -> dict[str, int | None]:
    """Source reference -> its size where the source catalog knows it (no request of its own)."""
    if not isinstance(source, KnowsSizes):
        return {item.source: None for item in copies}
    return {item.source: source.image_size(parse_reference(item.source)) for item in copies}


def choose(
    copies: Sequence[WorkItem], *, pushed: bool, known_sizes: Mapping[str, int | None], environ: Mapping[str, str]
) -> tuple[bool, str]:
    """Whether a run's batches go to Lambda, and why (or why not), for the lister's log."""
    if not pushed:
        return False, "not push-triggered: Fargate"
    if not enabled(environ):
        return False, "the fast path is off (fastPath false): Fargate"
    if len(copies) > MAX_IMAGES:
        return False, f"{len(copies)} images to copy, more than the fast path's {MAX_IMAGES}: Fargate"
    total = sum(size for size in known_sizes.values() if size)
    if total > MAX_BYTES:
        return False, f"{total} bytes to copy, more than the fast path's {MAX_BYTES}: Fargate"
    unknown = sum(1 for size in known_sizes.values() if size is None)
    sized = f"{total} known bytes" + (f", {unknown} image(s) of unknown size" if unknown else "")
    return True, f"{len(copies)} image(s), {sized}: Lambda"


def _batch(event: Mapping[str, Any]) -> tuple[str, str, str, list[WorkItem]]:
    missing = [k for k in ("run_id", "bucket", "outcome_prefix", "items") if not event.get(k)]
    if missing:
        raise BatchRefused(f"the fast path's payload lacks {', '.join(missing)} (set by the state machine)")
    try:
        items = batch.parse_items(event["items"])
    except ConfigError as exc:
        raise BatchRefused(str(exc)) from None
    return str(event["run_id"]), str(event["bucket"]), str(event["outcome_prefix"]), items


def handle(
    event: Mapping[str, Any],
    *,
    remaining_seconds: Callable[[], float],
    environ: Mapping[str, str],
    copier: str = "lambda",
    s3: Any | None = None,
    build: copier_task.ContextBuilder = copier_task.default_build,
    image_list_loader: Callable[[str], str] | None = copier_task.ssm_loader,
    copier_factory: CopierFactory = Copier,
) -> dict[str, Any]:
    """Copy one batch within the invocation's time; the answer says whether Fargate must finish it.

    `remaining_seconds`: the invocation's time left (the Lambda context's); `copier` names what
    ran the batch, for the recorder's messages (the invoked function and request id).
    """
    started = time.monotonic()
    run_id, bucket, prefix, items = _batch(event)
    left = remaining_seconds()
    if len(items) > MAX_IMAGES or left < START_RESERVE_SECONDS + END_RESERVE_SECONDS:
        reason = (
            f"{len(items)} images, more than the fast path's {MAX_IMAGES}"
            if len(items) > MAX_IMAGES
            else f"only {left:.0f}s left in the invocation"
        )
        log.warning("run %s: batch of %d image(s) handed back to Fargate: %s", run_id, len(items), reason)
        return _answer(run_id, copier, [], handed_back=len(items), reason=reason, started=started)
    log.info("run %s: copying a batch of %d image(s) in Lambda", run_id, len(items))
    stop = threading.Event()
    # Both clocks count from `started`: the context's remaining time is read once.
    no_new_copy = threading.Timer(left - END_RESERVE_SECONDS - START_RESERVE_SECONDS, stop.set)
    no_new_copy.daemon = True
    no_new_copy.start()
    try:
        with skopeo.deadline(started + left - END_RESERVE_SECONDS):
            outcomes = copier_task.copy_batch(
                items,
                environ,
                run_id,
                build=build,
                image_list_loader=image_list_loader,
                copier_factory=copier_factory,
                stop=stop,
            )
    finally:
        no_new_copy.cancel()
    key = copier_task.write_outcomes(s3, bucket, prefix, items, outcomes)
    answer = _answer(run_id, copier, outcomes, handed_back=0, reason="", started=started)
    unfinished = answer["unfinished"]
    if unfinished:
        answer["reason"] = f"{unfinished} image(s) not copied in time"
        log.warning("run %s: %s; outcomes in %s, Fargate finishes the batch", run_id, answer["reason"], key)
    else:
        log.info("run %s: batch done in Lambda, %d copied, %d failed; outcomes in %s",
                 run_id, answer["copied"], answer["failed"], key)  # fmt: skip
    return answer


def _answer(
    run_id: str, copier: str, outcomes: list[Outcome], *, handed_back: int, reason: str, started: float
) -> dict[str, Any]:
    """What the state machine reads: `finished` decides between recording and Fargate.

    `seconds`: the handler's own time (the invocation's, less the runtime's start), in the
    execution history for whoever wonders where a push's latency went."""
    interrupted = sum(1 for o in outcomes if o.status == "interrupted")
    copied = sum(1 for o in outcomes if o.status in ("copied", "skipped"))
    return {
        "run_id": run_id,
        "finished": not handed_back and not interrupted,
        "copied": copied,
        "failed": len(outcomes) - copied - interrupted,
        "unfinished": handed_back + interrupted,
        "reason": reason,
        "task_arn": copier,
        "seconds": round(time.monotonic() - started, 3),
    }
