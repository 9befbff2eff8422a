"""Lambda: ECR push events from the push queue -> state machine executions (PushIntakeFunction).

Logic: ecr_transfer.cloud.push_intake. An exception returns the whole batch to SQS for redelivery;
the executions it already started are found again by name, not started twice.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_transfer import envvars
from ecr_transfer.cloud import push_intake

logger = Logger()
tracer = Tracer()
metrics = Metrics()
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
    metrics.add_metric(name="ImagesPushed", unit=MetricUnit.Count, value=result["pushed"])
    metrics.add_metric(name="PushRunsStarted", unit=MetricUnit.Count, value=len(result["executions"]))
    logger.info("pushes received", extra=result)
    return result
