"""Fargate copier entrypoint: copy the batch named by the environment, write outcomes to S3.

Everything lives in ecr_transfer.cloud.copier_task (unit tested without a container). The state
machine sets ECR_TRANSFER_RUN_ID, ECR_TRANSFER_WORK_BUCKET, ECR_TRANSFER_OUTCOME_PREFIX and
ECR_TRANSFER_WORK_ITEMS per batch; the task definition sets the transfer settings.
"""

from __future__ import annotations

from ecr_transfer.cloud.copier_task import main

if __name__ == "__main__":
    raise SystemExit(main())
