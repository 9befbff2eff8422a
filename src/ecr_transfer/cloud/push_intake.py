"""ECR push events (through EventBridge and an SQS queue) -> one state machine execution per burst.

The queue is the buffer: the intake function receives up to a batch of messages at once (with a
batching window), so a CI job pushing 50 tags starts one execution, not 50. Each execution plans
the pushed images only (ecr_transfer.pushes). If starting the execution fails the batch is
raised back to SQS, which redelivers it: no push is dropped on the way in. The execution name is
derived from the messages, so a redelivered batch finds its execution already started instead of
starting a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ecr_transfer.pushes import MAX_PUSHED_PER_RUN, PUSH_TRIGGER, PushedImage, latest_per_tag

log = logging.getLogger(__name__)

EVENT_SOURCE = "aws.ecr"
DETAIL_TYPE = "ECR Image Action"


@dataclass(frozen=True, slots=True, kw_only=True)
class Intake:
    pushes: list[PushedImage]
    ignored: list[str]
    """Why a message started nothing (another registry, an untagged push, not a push)."""


def read_messages(records: Iterable[Mapping[str, Any]], *, account: str, region: str) -> Intake:
    """The pushed images of the source registry (`account`, `region`) in a batch of SQS records."""
    pushes: list[PushedImage] = []
    ignored: list[str] = []
    for record in records:
        message_id = str(record.get("messageId", "?"))
        try:
            event = json.loads(record["body"])
            detail = event["detail"]
        except (KeyError, TypeError, ValueError):
            ignored.append(f"{message_id}: not an EventBridge event")
            continue
        if event.get("source") != EVENT_SOURCE or event.get("detail-type") != DETAIL_TYPE:
            ignored.append(f"{message_id}: not an ECR image action")
        elif detail.get("action-type") != "PUSH" or detail.get("result") != "SUCCESS":
            ignored.append(f"{message_id}: {detail.get('action-type')} {detail.get('result')}, not a successful push")
        elif event.get("account") != account or event.get("region") != region:
            ignored.append(f"{message_id}: registry {event.get('account')}/{event.get('region')} is not the source")
        elif not detail.get("image-tag"):
            # Only tagged images are selected; an untagged push (a platform child, a referrer)
            # arrives with the tag that follows it.
            ignored.append(f"{message_id}: {detail.get('repository-name')}@{detail.get('image-digest')} has no tag")
        else:
            pushes.append(
                PushedImage(
                    repository=str(detail["repository-name"]),
                    tag=str(detail["image-tag"]),
                    digest=str(detail.get("image-digest") or ""),
                    pushed_at=str(event.get("time") or ""),
                )
            )
    return Intake(pushes=latest_per_tag(pushes), ignored=ignored)


def execution_name(pushes: Sequence[PushedImage]) -> str:
    """`push-<time>-<hash>`: the same burst gives the same name (a redelivery starts nothing new)."""
    digest = hashlib.sha256(json.dumps([p.as_input() for p in pushes], sort_keys=True).encode()).hexdigest()
    stamp = max(p.pushed_at for p in pushes).replace("-", "").replace(":", "").split(".")[0]
    return f"push-{stamp}-{digest[:16]}"[:80]


def start_executions(intake: Intake, *, sfn: Any, state_machine_arn: str) -> list[str]:
    """One execution per MAX_PUSHED_PER_RUN pushed images; returns the execution names."""
    names = []
    for start in range(0, len(intake.pushes), MAX_PUSHED_PER_RUN):
        chunk = intake.pushes[start : start + MAX_PUSHED_PER_RUN]
        name = execution_name(chunk)
        body = json.dumps({"trigger": PUSH_TRIGGER, "pushed": [p.as_input() for p in chunk]})
        try:
            sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=body)
        except sfn.exceptions.ExecutionAlreadyExists:
            log.info("execution %s was already started for this burst (a redelivered batch)", name)
        names.append(name)
    return names


def handle(event: Mapping[str, Any], *, sfn: Any, state_machine_arn: str, account: str, region: str) -> dict[str, Any]:
    intake = read_messages(event.get("Records") or [], account=account, region=region)
    for reason in intake.ignored:
        log.info("ignored: %s", reason)
    names = start_executions(intake, sfn=sfn, state_machine_arn=state_machine_arn)
    return {"pushed": len(intake.pushes), "ignored": len(intake.ignored), "executions": names}
