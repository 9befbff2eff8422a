"""ecr-transfer: keep Amazon ECR registries fed with container images from anywhere."""

from __future__ import annotations

import logging

__version__ = "0.1.0"

# botocore logs raw request and response bodies at DEBUG: Secrets Manager values, STS session
# credentials, ECR authorization tokens. `ecr-transfer -vv`, a Lambda at DEBUG or any app whose
# root logger is at DEBUG would print them. Capped here; wire-level debugging stays possible by
# opting in explicitly: logging.getLogger("botocore").setLevel(logging.DEBUG).
logging.getLogger("botocore").setLevel(logging.INFO)
