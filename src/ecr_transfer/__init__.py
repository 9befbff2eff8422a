"""ecr-transfer: keep Amazon ECR registries fed with container images from anywhere."""

from __future__ import annotations

__version__ = "0.1.0"
