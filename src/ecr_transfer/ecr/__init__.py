"""Amazon ECR on either side of a transfer: hosts, sessions, tokens, catalogs and pacing.

`side.EcrSides` is the entry point: `ecr_transfer.context.build_context` builds every Amazon ECR
side with it (and reads secrets through it when any side is ECR).
"""
