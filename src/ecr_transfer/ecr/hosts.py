"""ECR registry hosts from account and region, for every AWS partition.

The partition and its DNS suffix come from botocore's bundled endpoint data, so a region added
to botocore (or a new partition such as aws-eusc) works without a code change. The old plugin
hard-coded `.com.cn` for two region names.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import botocore.loaders
import botocore.regions
from botocore.exceptions import UnknownRegionError

from ecr_transfer.errors import ConfigError

_ECR_HOST = re.compile(r"(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.(?P<suffix>[a-z0-9.-]+)\Z")


@dataclass(frozen=True, slots=True)
class EcrRegistry:
    """One private ECR registry: an account in a region."""

    account_id: str
    region: str
    partition: str
    host: str


@functools.lru_cache(maxsize=1)
def _resolver() -> botocore.regions.EndpointResolver:
    # Loading endpoints.json takes ~20 ms; one resolver serves the whole process.
    return botocore.regions.EndpointResolver(botocore.loaders.create_loader().load_data("endpoints"))


def partition_for_region(region: str) -> str:
    """`cn-north-1` -> `aws-cn`; regions botocore does not list match by its partition regex."""
    try:
        return str(_resolver().get_partition_for_region(region))
    except UnknownRegionError:
        raise ConfigError(f"{region!r} is not a region of any AWS partition known to botocore") from None


def dns_suffix(partition: str) -> str:
    """`aws` -> `amazonaws.com`, `aws-cn` -> `amazonaws.com.cn`."""
    return str(_resolver().get_partition_dns_suffix(partition))


def registry_for(account_id: str, region: str) -> EcrRegistry:
    partition = partition_for_region(region)
    return EcrRegistry(account_id, region, partition, f"{account_id}.dkr.ecr.{region}.{dns_suffix(partition)}")


def registry_host(account_id: str, region: str) -> str:
    """`<account>.dkr.ecr.<region>.<partition DNS suffix>`."""
    return registry_for(account_id, region).host


def parse_registry_host(host: str) -> EcrRegistry | None:
    """The account and region of an ECR registry host; None for any other host."""
    match = _ECR_HOST.match(host.lower())
    if match is None:
        return None
    try:
        partition = partition_for_region(match["region"])
    except ConfigError:
        return None
    if match["suffix"] != dns_suffix(partition):
        return None
    return EcrRegistry(match["account"], match["region"], partition, host.lower())


def is_ecr_host(host: str) -> bool:
    return parse_registry_host(host) is not None
