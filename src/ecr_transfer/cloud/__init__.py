"""Cloud-only glue between the state machine and the shared pipeline.

The Lambda handlers (src/lister, src/recorder, src/deployer, copier/lambda_handler.py) and the
Fargate copier entrypoint (copier/entrypoint.py) are thin wrappers over these modules, so all the logic is typed, unit
tested and importable without Powertools or a container.

How a run travels (statemachine/ecr_replication.asl.json):
  lister   -> plans, records skips in the ledger, writes the copy work list to S3 (`batch`)
  Map      -> reads the work list, batches it, runs one copier per batch: the copier image in
              Lambda for a small push run (`fast_copy`), else a Fargate task
  copier   -> copies its batch, writes the batch's outcomes to S3 (`copier_task`)
  recorder -> reads those outcomes (or records the batch as failed) into the ledger (`recorder`)
"""
