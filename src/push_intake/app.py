"""Lambda: ECR push events from the push queue -> state machine executions (PushIntakeFunction).

Logic: ecr_transfer.cloud.push_intake. An exception returns the whole batch to SQS for redelivery;
the executions it already started are found again by name, not started twice.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_transfer import envvars
from ecr_transfer import metrics as measures
from ecr_transfer.cloud import emf, push_intake

logger = Logger()
tracer = Tracer()
metrics = emf.new_metrics(os.environ)
sfn = boto3.client("stepfunctions")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = push_intake.handle(
        event,
        sfn=sfn,
        state_machine_arn=os.environ[envvars.STATE_MACHINE_ARN],
        account=os.environ[envvars.SRC_ACCOUNT_ID],
        region=os.environ[envvars.SRC_REGION],
    )
    emf.add(metrics, measures.received(result))
    logger.info("pushes received", extra=result)
    return result
