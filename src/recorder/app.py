"""Lambda: record batch outcomes and close runs (RecordOutcomeFunction). Logic: ecr_transfer.cloud.recorder."""

from __future__ import annotations

import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_transfer import envvars
from ecr_transfer import metrics as measures
from ecr_transfer.cloud import emf, recorder
from ecr_transfer.ledger import open_ledger

logger = Logger()
tracer = Tracer()
metrics = emf.new_metrics(os.environ)
# Module scope: warm invocations reuse the connections.
s3 = boto3.client("s3")
ledger = open_ledger(os.environ[envvars.LEDGER])


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = recorder.handle(event, ledger=ledger, s3=s3)
    if event.get("action") == "record_batch":
        emf.add(metrics, measures.recorded(result), run_id=str(event["run_id"]))
        logger.info("batch recorded", extra=result)
    else:
        emf.add(metrics, measures.finished(result), run_id=result["run_id"])
        logger.info("run finished", extra={k: v for k, v in result.items() if k != "failures"})
    return result
