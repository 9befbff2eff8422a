"""Registry hosts from account + region for every partition, from botocore's data."""

from __future__ import annotations

import pytest

from ecr_transfer.ecr.hosts import is_ecr_host, parse_registry_host, partition_for_region, registry_host
from ecr_transfer.errors import ConfigError

ACCOUNT = "123456789012"


@pytest.mark.parametrize(
    ("region", "host", "partition"),
    [
        ("us-east-1", f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com", "aws"),
        ("ap-southeast-7", f"{ACCOUNT}.dkr.ecr.ap-southeast-7.amazonaws.com", "aws"),
        ("cn-north-1", f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn", "aws-cn"),
        ("cn-northwest-1", f"{ACCOUNT}.dkr.ecr.cn-northwest-1.amazonaws.com.cn", "aws-cn"),
        ("us-gov-west-1", f"{ACCOUNT}.dkr.ecr.us-gov-west-1.amazonaws.com", "aws-us-gov"),
        ("us-gov-east-1", f"{ACCOUNT}.dkr.ecr.us-gov-east-1.amazonaws.com", "aws-us-gov"),
        ("us-iso-east-1", f"{ACCOUNT}.dkr.ecr.us-iso-east-1.c2s.ic.gov", "aws-iso"),
    ],
)
def test_registry_host_and_partition_follow_the_region(region: str, host: str, partition: str) -> None:
    assert registry_host(ACCOUNT, region) == host
    assert partition_for_region(region) == partition
    parsed = parse_registry_host(host)
    assert parsed is not None and (parsed.account_id, parsed.region, parsed.partition) == (ACCOUNT, region, partition)


def test_region_botocore_does_not_list_yet_matches_its_partition_pattern() -> None:
    # A future China region: the aws-cn regex (^cn\-\w+\-\d+$) knows it before endpoints.json does.
    assert registry_host(ACCOUNT, "cn-south-9") == f"{ACCOUNT}.dkr.ecr.cn-south-9.amazonaws.com.cn"


def test_unknown_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="'xx-nowhere-1' is not a region of any AWS partition known to botocore"):
        registry_host(ACCOUNT, "xx-nowhere-1")


@pytest.mark.parametrize(
    "host",
    [
        "quay.io",
        "registry-1.docker.io",
        f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com",  # China region, global suffix: not a real host
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.cn",
        "1234.dkr.ecr.us-east-1.amazonaws.com",
    ],
)
def test_other_hosts_are_not_ecr(host: str) -> None:
    assert not is_ecr_host(host)
