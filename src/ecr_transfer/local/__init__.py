"""Local stand-ins for the outside world: OCI image layouts and real registries on loopback.

Shared by the demo, the test suite and the benchmark; never used by the product at run time.
"""

from __future__ import annotations

from ecr_transfer.local.accesslog import RegistryRequest, RequestKind, count_kinds, parse_access_log
from ecr_transfer.local.oci import (
    Image,
    Index,
    Layer,
    Platform,
    SampleImages,
    write_image,
    write_index,
    write_samples,
)
from ecr_transfer.local.registry import Credentials, LocalRegistry, LocalRegistryError

__all__ = [
    "Credentials",
    "Image",
    "Index",
    "Layer",
    "LocalRegistry",
    "LocalRegistryError",
    "Platform",
    "RegistryRequest",
    "RequestKind",
    "SampleImages",
    "count_kinds",
    "parse_access_log",
    "write_image",
    "write_index",
    "write_samples",
]
