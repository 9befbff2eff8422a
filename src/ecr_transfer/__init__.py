"""ecr-transfer: keep Amazon ECR registries fed with container images from anywhere."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# botocore logs raw request and response bodies at DEBUG: Secrets Manager values, STS session
# credentials, ECR authorization tokens. `ecr-transfer -vv`, a Lambda at DEBUG or any app whose
# root logger is at DEBUG would print them. Its INFO lines ("Found credentials in environment
# variables") are noise in every run, since a level set on a logger lets them past a handler
# that the root's WARNING level does not guard. So: warnings only; wire-level debugging stays
# possible by opting in explicitly: logging.getLogger("botocore").setLevel(logging.DEBUG).
logging.getLogger("botocore").setLevel(logging.WARNING)
