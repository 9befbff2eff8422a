"""template.yaml, samconfig.toml and the copier image, checked against the promises they carry.

`sam validate --lint` and `sam build` of the zip functions run here when the SAM CLI is
installed (on PATH, or in .venv-sam); CI installs it, so there they always run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer import envvars
from ecr_transfer.cloud import batch
from ecr_transfer.settings import ENV_NAMES
from support.cfn import ROOT, source_template
from support.sam import python312_env, sam_cli

DTH_PARAMETERS = [
    "sourceType",
    "srcRegion",
    "srcAccountId",
    "srcList",
    "srcImageList",
    "srcCredential",
    "destRegion",
    "destAccountId",
    "destPrefix",
    "destCredential",
    "includeUntagged",
    "ecsClusterName",
    "ecsVpcId",
    "ecsSubnetA",
    "ecsSubnetB",
    "alarmEmail",
]


def resources() -> dict[str, Any]:
    return dict(source_template()["Resources"])


def props(name: str) -> dict[str, Any]:
    return dict(resources()[name]["Properties"])


# -- layout and parameters ------------------------------------------------------------------------
def test_sections_come_in_the_documented_order() -> None:
    keys = [k for k in source_template() if k not in {"AWSTemplateFormatVersion", "Transform", "Description"}]
    assert keys == ["Parameters", "Metadata", "Conditions", "Rules", "Globals", "Resources", "Outputs"]


def test_resources_are_grouped_under_banner_comments() -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    body = text[text.index("\nResources:") : text.index("\nOutputs:")]
    banners = re.findall(r"\n  # =+\n  # (.+)\n  # =+\n", body)
    assert len(banners) >= 6, banners


def test_every_parameter_is_described_constrained_and_grouped() -> None:
    tpl = source_template()
    parameters = tpl["Parameters"]
    for name in DTH_PARAMETERS:
        assert name in parameters, f"the Data Transfer Hub parameter {name} is missing"
    groups = tpl["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    grouped = [p for g in groups for p in g["Parameters"]]
    assert sorted(grouped) == sorted(parameters), "each parameter in exactly one group"
    for name, spec in parameters.items():
        assert len(spec.get("Description", "")) > 20, name
        assert "AllowedValues" in spec or "AllowedPattern" in spec, name


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("srcRegion", ["", "us-west-2", "cn-north-1", "ap-southeast-3"], ["US-WEST-2", "west"]),
        ("srcAccountId", ["", "123456789012"], ["12345", "12345678901a"]),
        ("destPrefix", ["", "mirror", "mirror/team/", "a.b-c_d"], ["Mirror", "a b"]),
        ("scheduleExpression", ["rate(1 day)", "cron(0 3 * * ? *)", "ONE_TIME"], ["daily", "rate 1 day"]),
        ("concurrency", ["1", "10", "100"], ["0", "101", "ten", ""]),
        ("srcRoleArn", ["", "arn:aws-cn:iam::123456789012:role/pull"], ["arn:aws:iam::1:role/x", "role/x"]),
        ("srcCredential", ["", "dth/ecr-cn", "my_secret-1"], ["arn:aws:secretsmanager:x", "a b"]),
        ("alarmEmail", ["", "ops@example.com"], ["ops", "ops@example"]),
        ("srcImageList", ["", "nginx,quay.io/coreos/etcd:v3.5.0", "a:ALL_TAGS\nb@sha256:ab"], ['x"y', "a;b"]),
        ("ecsSubnetA", ["", "subnet-0123456789abcdef0"], ["subnet-xyz"]),
    ],
)
def test_parameter_patterns_accept_good_values_and_reject_bad_ones(name: str, good: list[str], bad: list[str]) -> None:
    pattern = re.compile(source_template()["Parameters"][name]["AllowedPattern"])
    for value in good:
        assert pattern.fullmatch(value), f"{name} should accept {value!r}"
    for value in bad:
        assert not pattern.fullmatch(value), f"{name} should reject {value!r}"


def test_defaults_keep_the_old_behaviour() -> None:
    parameters = source_template()["Parameters"]
    assert parameters["scheduleExpression"]["Default"] == "rate(1 day)"
    assert parameters["concurrency"]["Default"] == "10"
    assert parameters["sourceType"]["AllowedValues"] == ["Amazon_ECR", "Public"]
    assert parameters["srcList"]["AllowedValues"] == ["ALL", "SELECTED"]


# -- functions and settings -----------------------------------------------------------------------
def test_globals_set_powertools_and_functions_run_python_312() -> None:
    glob = source_template()["Globals"]["Function"]
    env = glob["Environment"]["Variables"]
    assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(env)
    assert glob["Tracing"] == {"Fn::If": ["TracingAvailable", "Active", "PassThrough"]}  # see test_partitions.py
    for name in ("ListerFunction", "RecorderFunction", "DeployHelperFunction"):
        p = props(name)
        assert p["Runtime"] == "python3.12" and p["Handler"] == "app.lambda_handler"
        assert p["Layers"] == [{"Ref": "SharedLayer"}]
        assert (ROOT / p["CodeUri"] / "app.py").is_file()


def test_log_groups_keep_the_names_the_faq_tells_users() -> None:
    assert props("ListerFunction")["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-ListImagesFunction"}
    assert props("ListerLogGroup")["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}-ListImagesFunction"}
    assert props("ContainerLogGroup")["LogGroupName"] == {"Fn::Sub": "${AWS::StackName}-DTHECRContainerLogGroup"}
    for name, resource in resources().items():
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert resource["Properties"]["RetentionInDays"] == {"Ref": "logRetentionDays"}, name
    # Each named function logs into the group the stack created (and deletes) for it.
    for function, group in [
        ("ListerFunction", "ListerLogGroup"),
        ("RecorderFunction", "RecorderLogGroup"),
        ("DeployHelperFunction", "DeployHelperLogGroup"),
        ("CopierImageFunction", "CopierFunctionLogGroup"),
    ]:
        name = props(function)["FunctionName"]["Fn::Sub"]
        assert props(group)["LogGroupName"]["Fn::Sub"] == f"/aws/lambda/{name}"
        assert resources()[function]["DependsOn"] == group


def _settings_env(env: dict[str, Any]) -> set[str]:
    return {k for k in env if k in ENV_NAMES}


def test_lister_and_copier_read_the_same_settings() -> None:
    lister = props("ListerFunction")["Environment"]["Variables"]
    container = props("CopierTaskDefinition")["ContainerDefinitions"][0]
    task = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert _settings_env(lister) == _settings_env(task)
    # Every variable the template sets means something to the code.
    known = set(ENV_NAMES) | {
        envvars.SRC_IMAGE_LIST_PARAMETER,
        envvars.REGISTRY_CA_PARAMETER,
        envvars.LEDGER,
        envvars.LEDGER_LEASE_SECONDS,
        envvars.STACK_NAME,
        envvars.FAST_PATH,
        batch.WORK_BUCKET,
    }
    assert set(lister) <= known
    assert set(task) <= known | {"AWS_DEFAULT_REGION"}
    # The list comes from SSM, never inline (it can be updated without a redeploy).
    assert envvars.SRC_IMAGE_LIST not in lister and envvars.SRC_IMAGE_LIST not in task
    assert lister[envvars.SRC_IMAGE_LIST_PARAMETER] == {"Ref": "ImageListParameter"}
    assert lister[envvars.LEDGER] == {"Fn::Sub": "dynamodb://${LedgerTable}"}
    # PEM texts would not fit in a Lambda's 4 KB of environment: the CAs come from SSM too.
    assert envvars.REGISTRY_CA_BUNDLES not in lister and envvars.REGISTRY_CA_BUNDLES not in task
    cas = {"Ref": "registryCaParameter"}
    assert lister[envvars.REGISTRY_CA_PARAMETER] == task[envvars.REGISTRY_CA_PARAMETER] == cas


def test_functions_ship_every_dependency_of_the_package() -> None:
    """The layer holds ecr_transfer only (BuildMethod copies src/): each function that imports it
    must list the package's own dependencies, or it fails at import time in Lambda, not in tests."""
    import tomllib

    def names(lines: list[str]) -> set[str]:
        return {re.split(r"[<>=\[ ]", line.strip(), maxsplit=1)[0].lower() for line in lines if line.strip()}

    package = names(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for function in ("ListerFunction", "RecorderFunction"):
        text = (ROOT / props(function)["CodeUri"] / "requirements.txt").read_text()
        listed = names([line for line in text.splitlines() if not line.startswith("#")])
        assert package <= listed, f"{function} lacks {sorted(package - listed)}"


def test_the_ledger_lease_outlives_a_batch() -> None:
    """A run's lease is renewed by the recorder after each batch; one batch may run until its timeout."""
    asl = json.loads((ROOT / "statemachine" / "ecr_replication.asl.json").read_text(encoding="utf-8"))
    child = asl["States"]["Copy images"]["ItemProcessor"]["States"]["Copy batch on Fargate"]
    for function in ("ListerFunction", "RecorderFunction"):
        lease = int(props(function)["Environment"]["Variables"][envvars.LEDGER_LEASE_SECONDS])
        assert child["TimeoutSeconds"] < lease <= child["TimeoutSeconds"] * 1.5, function


def test_secrets_travel_as_names_only() -> None:
    for name, spec in source_template()["Parameters"].items():
        if "Credential" in name:
            assert "name" in spec["Description"].lower()
            assert not re.compile(spec["AllowedPattern"]).fullmatch('{"password": "x"}')


# -- storage --------------------------------------------------------------------------------------
def test_ledger_table_keeps_the_old_keys() -> None:
    table = props("LedgerTable")
    assert table["KeySchema"] == [
        {"AttributeName": "Image", "KeyType": "HASH"},
        {"AttributeName": "Tag", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ExpiresAt", "Enabled": True}

    # The CLI's tables and the tests' are made by table_definition(): the same keys and index.
    from ecr_transfer.ledger.dynamodb import table_definition

    made = table_definition("t")
    for key in ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes", "BillingMode"):
        assert table[key] == made[key], key


def test_work_bucket_is_private_encrypted_and_expires() -> None:
    bucket = props("WorkBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    (rule,) = bucket["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "runs/" and rule["ExpirationInDays"] > 0
    assert props("WorkBucketCleanup")["BucketName"] == {"Ref": "WorkBucket"}


# -- ECS and the copier image ---------------------------------------------------------------------
def test_task_runs_the_image_sam_built() -> None:
    function = resources()["CopierImageFunction"]
    assert function["Properties"]["PackageType"] == "Image"
    # Never invoked unless the fast path is on (tests/unit/test_fast_path_template.py).
    assert function["Properties"]["ReservedConcurrentExecutions"] == {
        "Fn::If": ["FastPathEnabled", {"Ref": "AWS::NoValue"}, 0]
    }
    assert function["Properties"]["AutoPublishAlias"]
    assert function["Metadata"]["DockerContext"] == "."
    assert (ROOT / function["Metadata"]["Dockerfile"]).is_file()
    assert props("CopierImage")["FunctionVersionArn"] == {"Ref": "CopierImageFunction.Version"}
    task = props("CopierTaskDefinition")
    (container,) = task["ContainerDefinitions"]
    assert container["Image"] == {"Fn::GetAtt": ["CopierImage", "ImageUri"]}
    assert task["RequiresCompatibilities"] == ["FARGATE"] and (task["Cpu"], task["Memory"]) == ("512", "1024")
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "ContainerLogGroup"}


def test_dockerfile_pins_base_image_and_skopeo_so_that_a_rebuild_keeps_working() -> None:
    text = (ROOT / "copier" / "Dockerfile").read_text(encoding="utf-8")
    (base,) = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert base == "${BASE_IMAGE}"
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)", text, re.MULTILINE)
    assert re.fullmatch(r"python:3\.12\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", default), default
    # The template passes the same default, so China users change it in one documented place.
    build_args = resources()["CopierImageFunction"]["Metadata"]["DockerBuildArgs"]
    assert build_args == {"BASE_IMAGE": default, "APT_MIRROR": ""}
    # Upstream 1.9.3 pinned; Debian's rebuild suffix (+b10, +b11...) free; the build checks the version.
    assert re.search(r"^ARG SKOPEO_VERSION=1\.9\.3\+ds1-1\*$", text, re.MULTILINE)
    assert '"skopeo=${SKOPEO_VERSION}"' in text
    assert 'skopeo --version | grep -q "version 1\\.9\\.3$"' in text
    # Not root on Fargate: the task definition's User (no USER in the image: sam local invoke adds
    # its emulator to it as root, and Lambda picks a user of its own).
    assert not re.search(r"^USER ", text, re.MULTILINE)
    (container,) = props("CopierTaskDefinition")["ContainerDefinitions"]
    assert container["User"] == "copier" and "--uid 10001 copier" in text
    entry = (ROOT / "copier" / "entrypoint.py").read_text(encoding="utf-8")
    assert "from ecr_transfer.cloud.copier_task import main" in entry
    assert len(entry.splitlines()) <= 30


def test_cluster_and_network_are_created_only_when_missing() -> None:
    res = resources()
    assert res["Cluster"]["Condition"] == "CreateCluster"
    for name in ("Vpc", "InternetGateway", "PublicSubnetA", "PublicSubnetB", "PublicDefaultRoute"):
        assert res[name]["Condition"] == "CreateVpc", name
    subs = props("ReplicationStateMachine")["DefinitionSubstitutions"]
    assert subs["SubnetA"] == {"Fn::If": ["CreateVpc", {"Ref": "PublicSubnetA"}, {"Ref": "ecsSubnetA"}]}


# -- schedule and first run -----------------------------------------------------------------------
def test_daily_schedule_one_time_option_and_a_first_run() -> None:
    res = resources()
    assert res["ReplicationSchedule"]["Condition"] == "IsScheduled"
    assert source_template()["Conditions"]["IsScheduled"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "scheduleExpression"}, "ONE_TIME"]}]
    }
    assert res["ReplicationSchedule"]["Properties"]["ScheduleExpression"] == {"Ref": "scheduleExpression"}
    first = res["FirstRun"]
    assert first["Type"] == "Custom::StartExecution"
    assert first["Properties"]["StateMachineArn"] == {"Ref": "ReplicationStateMachine"}
    # A new image list (or any transfer setting) on update starts a run too.
    assert {"Ref": "srcImageList"} in first["Properties"]["Settings"]


def test_outputs_name_what_users_look_for() -> None:
    outputs = source_template()["Outputs"]
    for name in (
        "StateMachineArn",
        "LedgerTableName",
        "ImageListParameterName",
        "ListerLogGroupName",
        "ContainerLogGroupName",
    ):
        assert outputs[name]["Description"], name


# -- samconfig and SAM CLI ------------------------------------------------------------------------
def test_samconfig_defaults() -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    default = config["default"]
    assert default["global"]["parameters"]["stack_name"] == "DTHECRStack"
    assert default["validate"]["parameters"]["lint"] is True
    deploy = default["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert (
        deploy["confirm_changeset"] is True and deploy["resolve_s3"] is True and deploy["resolve_image_repos"] is True
    )
    text = (ROOT / "samconfig.toml").read_text(encoding="utf-8").lower()
    assert "parameter_overrides" not in text or "password" not in text


@pytest.mark.skipif(sam_cli() is None, reason="SAM CLI not installed (pip install aws-sam-cli)")
def test_sam_validate_lint_is_clean() -> None:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    result = subprocess.run(
        [str(sam_cli()), "validate", "--lint", "--template-file", "template.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(sam_cli() is None, reason="SAM CLI not installed (pip install aws-sam-cli)")
def test_sam_build_of_the_zip_functions(tmp_path: Path) -> None:
    """Everything but the copier image (that one needs Docker) builds, layer included."""
    env = python312_env()
    if env is None:
        pytest.skip("python3.12 is not on PATH (sam build of python3.12 functions needs it)")
    build = tmp_path / "build"
    result = subprocess.run(
        [str(sam_cli()), "build", "--exclude", "CopierImageFunction", "--build-dir", str(build), "--no-cached"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (build / "SharedLayer" / "python" / "ecr_transfer" / "cloud" / "lister.py").is_file()
    assert (build / "ListerFunction" / "app.py").is_file()
    assert (build / "ListerFunction" / "aws_lambda_powertools").is_dir()
    assert (build / "RecorderFunction" / "yaml").is_dir()
    assert (build / "ListerFunction" / "semver").is_dir() and (build / "RecorderFunction" / "semver").is_dir()


def test_platforms_parameter_takes_what_the_settings_take() -> None:
    from ecr_transfer.subsets import parse_platforms

    pattern = re.compile(source_template()["Parameters"]["platforms"]["AllowedPattern"])
    for value in ["", "linux/amd64", "linux/amd64,linux/arm64", "linux/arm/v7, linux/arm64"]:
        assert pattern.fullmatch(value), value
        parse_platforms(value)
    for value in ["amd64", "linux/amd64,", "Linux/AMD64 ", "linux/amd64;linux/arm64"]:
        assert not pattern.fullmatch(value), value
