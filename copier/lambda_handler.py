"""Lambda handler of the copier image (the fast path): copy the batch in the event, answer whether it is done.

Everything lives in ecr_transfer.cloud.fast_copy. The image's ENTRYPOINT stays Fargate's; Lambda
starts `python -m awslambdaric lambda_handler.lambda_handler` (ImageConfig in template.yaml).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ecr_transfer.cloud import fast_copy

# The runtime interface client installs its own handler on the root logger; ours only sets the level.
logging.getLogger().setLevel(logging.INFO)


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return fast_copy.handle(
        event,
        remaining_seconds=lambda: context.get_remaining_time_in_millis() / 1000,
        environ=os.environ,
        copier=f"{context.invoked_function_arn} request {context.aws_request_id}",
    )
