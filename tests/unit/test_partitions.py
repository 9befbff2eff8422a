"""What differs in the China regions (aws-cn), checked on the template as CloudFormation deploys it.

SAM's transform runs here (tests/support/cfn.py) and the result is resolved for one deployment in
each partition: X-Ray's Lambda integration is not available in China, and Fargate in cn-north-1
runs only in AZ IDs cnn1-az1 and cnn1-az2 (AZ names map to different IDs in every account).
"""

from __future__ import annotations

from typing import Any

import pytest

from support.cfn import Deployment, Resolver, source_template, transformed

REGIONS = ["us-east-1", "cn-north-1", "cn-northwest-1"]
BASE = {"sourceType": "Public", "srcList": "SELECTED", "srcImageList": "nginx"}


@pytest.fixture(scope="module", params=REGIONS)
def deployed(request: pytest.FixtureRequest) -> tuple[Deployment, dict[str, dict[str, Any]]]:
    region = str(request.param)
    deployment = Deployment(region)
    return deployment, Resolver(transformed(region), BASE, {}, deployment).deployed()


def test_lambda_tracing_is_active_only_where_x_ray_integrates_with_lambda(
    deployed: tuple[Deployment, dict[str, dict[str, Any]]],
) -> None:
    deployment, resources = deployed
    functions = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) == 4
    expected = "PassThrough" if deployment.partition == "aws-cn" else "Active"
    for name, props in functions.items():
        assert props.get("TracingConfig", {}).get("Mode") == expected, name
        # Powertools' tracer is told too, so it does not try to send segments nobody collects.
        variables = props["Environment"]["Variables"]
        assert variables["POWERTOOLS_TRACE_DISABLED"] == ("true" if deployment.partition == "aws-cn" else "false")
    machines = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert len(machines) == 1
    assert not machines[0].get("TracingConfiguration", {}).get("Enabled", False)


def subnets(region: str, **params: str) -> dict[str, dict[str, Any]]:
    resources = Resolver(source_template(), {**BASE, **params}, {}, Deployment(region)).deployed()
    return {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::EC2::Subnet"}


def test_created_subnets_in_cn_north_1_are_placed_by_the_az_ids_fargate_runs_in() -> None:
    created = subnets("cn-north-1")
    assert {n: (p.get("AvailabilityZoneId"), p.get("AvailabilityZone")) for n, p in created.items()} == {
        "PublicSubnetA": ("cnn1-az1", None),
        "PublicSubnetB": ("cnn1-az2", None),
    }


def test_created_subnets_elsewhere_take_the_first_two_azs_or_the_ids_given() -> None:
    assert {n: p.get("AvailabilityZone") for n, p in subnets("us-east-1").items()} == {
        "PublicSubnetA": "us-east-1a",
        "PublicSubnetB": "us-east-1b",
    }
    chosen = subnets("us-east-1", ecsAzIdA="use1-az4", ecsAzIdB="use1-az6")
    assert {n: (p.get("AvailabilityZoneId"), p.get("AvailabilityZone")) for n, p in chosen.items()} == {
        "PublicSubnetA": ("use1-az4", None),
        "PublicSubnetB": ("use1-az6", None),
    }
    assert subnets("cn-north-1", ecsAzIdA="cnn1-az2", ecsAzIdB="cnn1-az1")["PublicSubnetA"]["AvailabilityZoneId"] == (
        "cnn1-az2"
    )


def test_az_ids_come_in_pairs_of_two_different_zones() -> None:
    rules = source_template()["Rules"]
    assert rules["AzIdANeedsB"]["Assertions"][0]["Assert"] == {
        "Fn::And": [
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "ecsAzIdB"}, ""]}]},
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "ecsAzIdA"}, {"Ref": "ecsAzIdB"}]}]},
        ]
    }
    assert rules["AzIdBNeedsA"]["RuleCondition"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "ecsAzIdB"}, ""]}]}


def egress(**params: str) -> list[tuple[str, int, int]]:
    resources = Resolver(source_template(), {**BASE, **params}, {}, Deployment("us-east-1")).deployed()
    rules = resources["CopierSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert all(r["CidrIp"] == "0.0.0.0/0" for r in rules)
    return [(r["IpProtocol"], int(r["FromPort"]), int(r["ToPort"])) for r in rules]


def test_copier_egress_is_https_only_unless_plain_http_or_another_port_is_asked_for() -> None:
    """Issue 10: the security group let the copy tasks out on every protocol and port."""
    assert egress() == [("tcp", 443, 443)]
    assert egress(ecsAllowHttp="true") == [("tcp", 443, 443), ("tcp", 80, 80)]
    assert egress(ecsExtraEgressPort="5000") == [("tcp", 443, 443), ("tcp", 5000, 5000)]
