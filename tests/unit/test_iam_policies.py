"""Least privilege in template.yaml, checked statement by statement.

Both branches of every Fn::If are checked, so a condition cannot hide a broad grant. `"*"` as a
resource is allowed only for the actions in support.iam.STAR_RESOURCE_ACTIONS, each of which either
has no resource type in IAM or is documented that way by the service that needs it (the README
lists them too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support.cfn import ROOT, Deployment, Resolver, source_template, transformed
from support.iam import STAR_RESOURCE_ACTIONS, as_list, branches, role_documents, statements, strings, violations

COPIERS = {"TaskRole", "CopierImageFunctionRole"}
"""The Fargate task's role and the fast path's function role: CopyImagesPolicy is both's."""


def test_policies_exist_where_expected() -> None:
    owners = {name for name, _ in statements()}
    assert owners == {
        "ListerFunction",
        "RecorderFunction",
        "DeployHelperFunction",
        "TaskExecutionRole",
        "TaskRole",
        "CopierImageFunctionRole",
        "ReplicationStateMachine",
        "ScheduleRole",
        "PushIntakeFunction",
    }


def test_no_wildcard_actions() -> None:
    for name, statement in statements():
        assert statement["Effect"] == "Allow", f"{name}: identity policies here only allow"
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), (
                f"{name}: {action!r} is a wildcard or malformed action"
            )


def test_star_resource_only_for_actions_that_need_it() -> None:
    for name, statement in statements():
        if "*" in as_list(statement["Resource"]):
            extra = set(as_list(statement["Action"])) - STAR_RESOURCE_ACTIONS
            assert not extra, f"{name}: {sorted(extra)} granted on every resource"


def test_every_arn_in_the_template_is_partition_aware() -> None:
    arns = [s for s in strings(source_template()["Resources"]) if "arn:" in s]
    assert len(arns) >= 15
    for text in arns:
        for match in re.finditer(r"arn:", text):
            assert text[match.end() :].startswith("${AWS::Partition}:"), f"hard-coded partition in {text!r}"


def test_nothing_is_pinned_to_one_region_or_partition() -> None:
    text = json.dumps(source_template()["Resources"])
    assert not re.search(r"\b(us|eu|ap|sa|ca|me|af|cn)-[a-z]+-[0-9]\b", text), "a region name in Resources"
    assert "amazonaws.com.cn" not in text and "arn:aws" not in text


def test_pass_role_only_on_the_two_task_roles_and_only_to_ecs() -> None:
    passes = [(n, s) for n, s in statements() if "iam:PassRole" in as_list(s["Action"])]
    assert len(passes) == 1
    name, statement = passes[0]
    assert name == "ReplicationStateMachine" and as_list(statement["Action"]) == ["iam:PassRole"]
    assert statement["Resource"] == [{"Fn::GetAtt": ["TaskRole", "Arn"]}, {"Fn::GetAtt": ["TaskExecutionRole", "Arn"]}]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_run_task_sync_gets_exactly_what_step_functions_documents() -> None:
    machine = [s for n, s in statements() if n == "ReplicationStateMachine"]
    ecs = {a: s for s in machine for a in as_list(s["Action"]) if a.startswith(("ecs:", "events:"))}
    assert set(ecs) == {
        "ecs:RunTask",
        "ecs:TagResource",
        "ecs:StopTask",
        "ecs:DescribeTasks",
        "events:PutTargets",
        "events:PutRule",
        "events:DescribeRule",
    }
    assert ecs["ecs:RunTask"]["Resource"] == {"Ref": "CopierTaskDefinition"}
    rule = ecs["events:PutRule"]["Resource"]
    assert rule == {
        "Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/"
        "StepFunctionsGetEventsForECSTaskRule"
    }


CLUSTER_ARN = {
    "Fn::If": [
        "CreateCluster",
        {"Fn::GetAtt": ["Cluster", "Arn"]},
        {"Fn::Sub": "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:cluster/${ecsClusterName}"},
    ]
}
CLUSTER_TASKS = {
    "Fn::Sub": [
        "arn:${AWS::Partition}:ecs:${AWS::Region}:${AWS::AccountId}:task/${ClusterName}/*",
        {"ClusterName": {"Fn::If": ["CreateCluster", {"Ref": "Cluster"}, {"Ref": "ecsClusterName"}]}},
    ]
}


def test_the_copier_tasks_are_run_watched_and_stopped_only_in_their_cluster() -> None:
    """Issue 10: StopTask/DescribeTasks were granted on every task of every cluster."""
    machine = {a: s for n, s in statements() if n == "ReplicationStateMachine" for a in as_list(s["Action"])}
    for action in ("ecs:StopTask", "ecs:DescribeTasks"):
        assert machine[action]["Resource"] == CLUSTER_TASKS, action
        assert machine[action]["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}, action
    assert machine["ecs:RunTask"]["Condition"] == {"ArnEquals": {"ecs:cluster": CLUSTER_ARN}}


def test_propagated_tags_may_be_put_on_the_task_only_by_run_task() -> None:
    """Issue 10: PropagateTags TASK_DEFINITION needs ecs:TagResource once the stack has tags."""
    definition = json.loads((ROOT / "statemachine" / "ecr_replication.asl.json").read_text())
    task = definition["States"]["Copy images"]["ItemProcessor"]["States"]["Copy batch on Fargate"]
    assert task["Parameters"]["PropagateTags"] == "TASK_DEFINITION"
    machine = [s for n, s in statements() if n == "ReplicationStateMachine"]
    (tag,) = [s for s in machine if "ecs:TagResource" in as_list(s["Action"])]
    assert as_list(tag["Action"]) == ["ecs:TagResource"]
    assert tag["Resource"] == CLUSTER_TASKS
    assert tag["Condition"] == {"StringEquals": {"ecs:CreateAction": "RunTask"}}


def test_no_direct_source_read_when_a_role_or_keys_stand_for_the_source() -> None:
    """Issue 10: with srcRoleArn (or srcCredential keys) the task's own identity never reads the source."""
    reads = [(n, s) for n, s in statements() if s.get("Sid") == "ReadSourceRegistry"]
    assert {n for n, _ in reads} == {"ListerFunction", *COPIERS}
    conditions = source_template()["Conditions"]
    assert conditions["ReadsSourceDirectly"] == {
        "Fn::And": [
            {"Condition": "IsEcrSource"},
            {"Fn::Not": [{"Condition": "HasSrcRole"}]},
            {"Fn::Not": [{"Condition": "HasSrcCredential"}]},
        ]
    }
    for name in ("ListerFunction", "CopyImagesPolicy"):
        text = json.dumps(source_template()["Resources"][name])
        assert '"Fn::If": ["ReadsSourceDirectly", {"Sid": "ReadSourceRegistry"' in text, name


def test_credential_secrets_with_a_customer_key_may_be_decrypted_only_through_secrets_manager() -> None:
    """Issue 10: GetSecretValue on a secret with a customer-managed key needs kms:Decrypt on it."""
    decrypts = [(n, s) for n, s in statements() if "kms:Decrypt" in as_list(s["Action"])]
    assert {n for n, _ in decrypts} == {"ListerFunction", *COPIERS}
    for name, statement in decrypts:
        assert statement["Resource"] == {"Ref": "credentialKmsKey"}, name
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.${AWS::URLSuffix}"}}
        }
        text = json.dumps(source_template()["Resources"]["CopyImagesPolicy" if name in COPIERS else name])
        assert '"Fn::If": ["HasCredentialKmsKey", {"Sid": "DecryptCredentialSecrets"' in text


def test_the_repository_kms_key_is_usable_only_through_ecr_in_the_destination_region() -> None:
    """kms:CreateGrant on repoKmsKey lets ECR encrypt the repositories it creates, and nothing else."""
    grants = [(n, s) for n, s in statements() if "kms:CreateGrant" in as_list(s["Action"])]
    assert [n for n, _ in grants] == ["TaskRole", "CopierImageFunctionRole"]
    (statement,) = {json.dumps(s, sort_keys=True): s for _, s in grants}.values()
    assert statement["Resource"] == {"Ref": "repoKmsKey"}
    assert statement["Condition"] == {
        "StringEquals": {
            "kms:ViaService": {
                "Fn::Sub": [
                    "ecr.${Region}.${AWS::URLSuffix}",
                    {"Region": {"Fn::If": ["HasDestRegion", {"Ref": "destRegion"}, {"Ref": "AWS::Region"}]}},
                ]
            }
        }
    }


def test_the_lister_queries_the_latest_outcomes_index_and_never_scans() -> None:
    """Issue 10: ledger.latest() (includeUntagged false) used a Scan the lister was not granted."""
    lister = [s for n, s in statements() if n == "ListerFunction"]
    actions = {a for s in lister for a in as_list(s["Action"]) if a.startswith("dynamodb:")}
    assert "dynamodb:Scan" not in actions
    (index,) = [s for s in lister if s.get("Sid") == "LatestOutcomes"]
    assert as_list(index["Action"]) == ["dynamodb:Query"]
    assert index["Resource"] == {"Fn::Sub": "${LedgerTable.Arn}/index/ByItemType"}
    table = source_template()["Resources"]["LedgerTable"]["Properties"]
    (gsi,) = table["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "ByItemType"


def test_only_the_lister_writes_ledger_batches() -> None:
    """Issue 15: the lister records a run's skips with BatchWriteItem; the recorder writes one outcome at a time."""
    holders = {n for n, s in statements() if "dynamodb:BatchWriteItem" in as_list(s["Action"])}
    assert holders == {"ListerFunction"}
    (ledger,) = [s for n, s in statements() if n == "ListerFunction" and s.get("Sid") == "LedgerReadWrite"]
    assert "dynamodb:BatchWriteItem" in as_list(ledger["Action"])
    assert ledger["Resource"] == {"Fn::GetAtt": ["LedgerTable", "Arn"]}


def test_distributed_map_may_only_start_its_own_children() -> None:
    machine = [s for n, s in statements() if n == "ReplicationStateMachine"]
    starts = [s for s in machine if "states:StartExecution" in as_list(s["Action"])]
    (start,) = starts
    assert start["Resource"]["Fn::Sub"].endswith(":stateMachine:${AWS::StackName}-ECRReplicationSM")


def test_secrets_are_read_by_name_only_when_configured() -> None:
    reads = [(n, s) for n, s in statements() if "secretsmanager:GetSecretValue" in as_list(s["Action"])]
    assert {n for n, _ in reads} == {"ListerFunction", *COPIERS}
    for _, statement in reads:
        resource = statement["Resource"]["Fn::Sub"]
        assert resource.endswith("-??????") and ":secret:${" in resource
    # And only under the condition that the secret name is set.
    text = json.dumps(source_template()["Resources"]["CopyImagesPolicy"])
    assert '"Fn::If": ["HasSrcCredential"' in text and '"Fn::If": ["HasDestCredential"' in text


def test_destination_writes_are_scoped_to_the_prefix() -> None:
    for name, statement in statements():
        if "ecr:PutImage" in as_list(statement["Action"]):
            assert name in COPIERS
            sub = statement["Resource"]["Fn::Sub"][0]
            assert sub.endswith(":repository/${destPrefix}*")


def test_trust_policies_name_one_service_each() -> None:
    resources = source_template()["Resources"]
    principals = {}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::IAM::Role":
            (statement,) = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            principals[name] = statement["Principal"]["Service"]
    assert principals == {
        "TaskExecutionRole": "ecs-tasks.amazonaws.com",
        "TaskRole": "ecs-tasks.amazonaws.com",
        "ScheduleRole": "events.amazonaws.com",
    }


def test_the_bucket_refuses_plain_http() -> None:
    policy = source_template()["Resources"]["WorkBucketPolicy"]["Properties"]["PolicyDocument"]
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


# -- what SAM itself adds ---------------------------------------------------------------------------
_TRANSFORM = r"""
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicyLookup:
    def load(self):
        return {}

tpl = yaml_parse(open(sys.argv[1]).read())
for name, res in tpl["Resources"].items():
    props = res.get("Properties", {})
    for key in ("CodeUri", "ContentUri", "DefinitionUri"):
        if isinstance(props.get(key), str):
            props[key] = "s3://artifacts/" + name  # what `sam package` puts there
fn = tpl["Resources"]["CopierImageFunction"]["Properties"]
fn["ImageUri"] = "123456789012.dkr.ecr.example.amazonaws.com/copier@sha256:" + "0" * 64
print(json.dumps(transform(tpl, {}, NoManagedPolicyLookup())))
"""


def _sam_python() -> str | None:
    """The interpreter the SAM CLI runs on (it has samtranslator), found through the `sam` script."""
    import shutil

    local = ROOT / ".venv-sam" / "bin" / "sam"
    sam = shutil.which("sam") or (str(local) if local.exists() else None)
    if sam is None:
        return None
    first = Path(sam).read_bytes()[:300].split(b"\n", 1)[0].decode(errors="replace")
    python = first[2:].strip() if first.startswith("#!") else ""
    return python if python and Path(python).exists() else None


@pytest.mark.skipif(_sam_python() is None, reason="SAM CLI (with samtranslator) not installed")
@pytest.mark.parametrize(("region", "partition"), [("us-east-1", "aws"), ("cn-north-1", "aws-cn")])
def test_sam_generated_roles_add_only_basic_logging_and_tracing(region: str, partition: str) -> None:
    """What CloudFormation's SAM transform produces in each partition: no broader grants than ours."""
    import os
    import subprocess

    result = subprocess.run(
        [str(_sam_python()), "-c", _TRANSFORM, str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        env={**os.environ, "AWS_DEFAULT_REGION": region},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resources = json.loads(result.stdout)["Resources"]
    allowed_managed = {
        f"arn:{partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        f"arn:{partition}:iam::aws:policy/AWSXrayWriteOnlyAccess",
        f"arn:{partition}:iam::aws:policy/AWSXRayDaemonWriteAccess",
    }
    roles = {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"}
    assert len(roles) == 9  # PushIntakeFunction's among them: the transform keeps conditional resources
    # The shared copy policy attaches to the role SAM generates for the copier function.
    attached = resources["CopyImagesPolicy"]["Properties"]["Roles"]
    assert attached == [{"Ref": "TaskRole"}, {"Ref": "CopierImageFunctionRole"}]
    assert {"TaskRole", "CopierImageFunctionRole"} <= set(roles)
    for name, role in roles.items():
        assert set(role.get("ManagedPolicyArns") or []) <= allowed_managed, name
        for policy in role.get("Policies") or []:
            for entry in policy["PolicyDocument"]["Statement"]:
                for statement in branches(entry):
                    for action in as_list(statement["Action"]):
                        assert "*" not in action, f"{name}: {action}"


def test_every_grant_anywhere_is_least_privilege() -> None:
    assert violations(source_template()) == []


def test_the_grant_checks_catch_broad_grants_wherever_they_are() -> None:
    bad = {
        "Resources": {
            "Extra": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
                },
            },
            "Fn": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Policies": [{"S3CrudPolicy": {"BucketName": "b"}}]},
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [
                                    {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
                                    {"Effect": "Allow", "Action": "ecr:PutImage", "Resource": "*"},
                                ]
                            }
                        }
                    ]
                },
            },
        }
    }
    assert violations(bad) == [
        "Extra.PolicyDocument: wildcard or malformed action 's3:*'",
        "Extra.PolicyDocument: ['s3:*'] granted on every resource",
        "Fn: policy {'S3CrudPolicy': {'BucketName': 'b'}} is not an inline statement list",
        "Role.Policies[0].PolicyDocument: Allow with NotAction",
        "Role.Policies[0].PolicyDocument: ['ecr:PutImage'] granted on every resource",
    ]


def _granted(role: str, **params: str) -> set[str]:
    """The actions `role` holds once CloudFormation resolved the template for `params`."""
    resources = Resolver(transformed("us-east-1"), params, {}, Deployment("us-east-1")).deployed()
    documents = role_documents(resources, role)
    return {a for d in documents for s in d["Statement"] for a in as_list(s["Action"])}


@pytest.mark.parametrize("role", ["TaskRole", "ListerFunctionRole"])
def test_a_destination_role_or_destination_keys_replace_the_tasks_own_destination_grants(role: str) -> None:
    """With destRoleArn or destCredential the task's own identity never touches the destination."""
    public = {"sourceType": "Public", "srcList": "SELECTED", "srcImageList": "nginx"}
    kms = {"repoEncryption": "KMS", "repoKmsKey": "arn:aws:kms:us-east-1:111122223333:key/k-1"}
    direct = _granted(role, **public, **kms)
    assert {"ecr:GetAuthorizationToken", "ecr:DescribeImages"} <= direct
    assert role != "TaskRole" or {"ecr:PutImage", "kms:CreateGrant"} <= direct
    for other in ({"destRoleArn": "arn:aws:iam::111122223333:role/writer"}, {"destCredential": "china-keys"}):
        granted = _granted(role, **public, **kms, **other)
        assert not {a for a in granted if a.startswith(("ecr:", "kms:CreateGrant"))}, other
    # An ECR source read with the task's own identity still needs its ECR token.
    ecr_source = {"sourceType": "Amazon_ECR", "srcList": "ALL", "srcRegion": "us-west-2"}
    granted = _granted(role, **ecr_source, destCredential="china-keys")
    assert "ecr:GetAuthorizationToken" in granted and "ecr:PutImage" not in granted
