"""Lambda: the stack's custom resources (DeployHelperFunction). Logic: ecr_transfer.cloud.custom_resource."""

from __future__ import annotations

import logging
from typing import Any

from ecr_transfer.cloud import custom_resource

logging.getLogger().setLevel(logging.INFO)


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    custom_resource.handle(event)
