"""Lambda: plan a run (ListImagesFunction). The logic lives in ecr_transfer.cloud.lister."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.typing import LambdaContext

from ecr_transfer import metrics as measures
from ecr_transfer.cloud import emf, lister

logger = Logger()
tracer = Tracer()
metrics = emf.new_metrics(os.environ)


def _image_list(name: str) -> str:
    # max_age=0: a list updated with put-parameter is used by the very next run.
    return str(parameters.get_parameter(name, max_age=0))


@logger.inject_lambda_context(correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = lister.list_images(event, image_list_loader=_image_list)
    emf.add(metrics, measures.planned(result), run_id=result["run_id"])
    if result["recovered"]:
        logger.warning("earlier runs found interrupted", extra={"runs": result["recovered"]})
    logger.info("run planned", extra={k: result[k] for k in ("planned", "to_copy", "skipped", "work_list_key")})
    return result
