"""Amazon ECR on either side of a transfer: hosts, sessions, tokens, catalogs and pacing.

`context.build_ecr_context` is the entry point; `ecr_transfer.context.build_context` calls it
whenever a side is Amazon ECR.
"""
