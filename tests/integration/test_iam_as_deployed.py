"""IAM as deployed: the cloud code runs under exactly the policies the transformed template grants.

For each scenario the template is transformed by SAM's translator and resolved for the scenario's
parameters (iam_world.Stack); each role the stack deploys is created in moto with exactly those
policy documents; then IAM is enforced (tests/support/moto_iam.py decides on resource ARNs and
conditions, and adds the KMS checks Secrets Manager and ECR make on the caller's behalf), and a run
goes through the lister and recorder Lambda handlers, the Fargate copier's batch code and the
deploy helper's custom resources, each with its own role's credentials. Image bytes go through
real docker-registry instances behind ECR emulators and real skopeo. Any request IAM refuses fails
the test; the last tests take a needed grant away and watch the run fail.

The state machine's own calls (RunTask, TagResource, ...) are not made here: Step Functions and
ECS do not run in moto (see the README); their grants are checked statement by statement in
tests/unit/test_iam_policies.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_transfer.cloud import custom_resource
from ecr_transfer.errors import ConfigError

from .ecr_support import ACCOUNT_A, ACCOUNT_B, EcrEmulator, account_keys, helper_client
from .iam_run import World, assert_nothing_refused, outcomes, run_pipeline
from .iam_world import (
    ADMIN_POLICY,
    BUCKET,
    COPIER_FUNCTION,
    REGION,
    RESOURCES,
    STATE_MACHINE,
    TABLE,
    Stack,
    registry_checks,
    registry_refusals,
)

pytest_plugins = ["integration.iam_world", "integration.iam_run"]
SRC_REGION = "us-west-2"
SECRET = "ecr-transfer/china-keys"


ECR_ALL = {"sourceType": "Amazon_ECR", "srcList": "ALL", "srcRegion": SRC_REGION, "destPrefix": "mirror"}


# -- scenarios --------------------------------------------------------------------------------
def test_ecr_source_all_runs_under_the_template_policies(world: World) -> None:
    src = world.ecr(ACCOUNT_A, SRC_REGION)
    dst = world.ecr(ACCOUNT_A, REGION)
    digests = {
        "team/app:1.0": src.publish(world.images.layout, "app-a", "team/app", "1.0"),
        "tools/multi:v1": src.publish(world.images.layout, "multi", "tools/multi", "v1"),
    }
    stack = world.deploy(Stack(ECR_ALL))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and run.lister["to_copy"] == 2
    assert {k: dst.digest(f"mirror/{k.split(':')[0]}", k.split(":")[1]) for k in digests} == digests
    assert outcomes("run-1") == {k: ("copied", d) for k, d in digests.items()}
    assert run.finished is not None and (run.finished["state"], run.finished["copied"]) == ("finished", 2)
    # The grants were really exercised, each by the role that holds it.
    assert {"ecr:DescribeRepositories", "ecr:DescribeImages", "dynamodb:PutItem", "s3:PutObject"} <= world.moto.allowed(
        "ListerFunctionRole"
    )
    assert {"ecr:CreateRepository", "ecr:GetAuthorizationToken", "s3:PutObject"} <= world.moto.allowed("TaskRole")
    # The registry requests, as ECR authorizes them: pulls from the source, pushes to the destination.
    task = stack.policies("TaskRole")
    assert registry_refusals(src, task) == [] and registry_refusals(dst, task, written="mirror") == []
    assert {c.action for c in registry_checks(dst)} >= {"ecr:PutImage", "ecr:CompleteLayerUpload"}
    assert {c.action for c in registry_checks(src)} >= {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}


def test_the_fast_path_copies_under_its_function_roles_policies(world: World) -> None:
    """Issue 14: the copier function's role (SAM's, plus CopyImagesPolicy) copies a batch as the task's does."""
    src = world.ecr(ACCOUNT_A, SRC_REGION)
    dst = world.ecr(ACCOUNT_A, REGION)
    digest = src.publish(world.images.layout, "app-a", "team/app", "2.0")
    stack = world.deploy(Stack({**ECR_ALL, "onPush": "true"}))

    run = run_pipeline(world, stack, in_lambda=True)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("mirror/team/app", "2.0") == digest
    assert outcomes("run-1") == {"team/app:2.0": ("copied", digest)}
    assert {"ecr:CreateRepository", "ecr:GetAuthorizationToken", "s3:PutObject"} <= world.moto.allowed(
        "CopierImageFunctionRole"
    )
    function = stack.policies("CopierImageFunctionRole")
    assert registry_refusals(src, function) == [] and registry_refusals(dst, function, written="mirror") == []


def test_public_selected_list_runs_under_the_template_policies(world: World) -> None:
    public = world.plain_registry()
    dst = world.ecr(ACCOUNT_A, REGION)
    digest = public.push(world.images.layout, "single", "library/nginx", "1.27")
    params = {"sourceType": "Public", "srcList": "SELECTED", "srcImageList": f"{public.host}/library/nginx:1.27"}
    stack = world.deploy(Stack(params))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("library/nginx", "1.27") == digest
    assert outcomes("run-1") == {"library/nginx:1.27": ("copied", digest)}
    assert registry_refusals(dst, stack.policies("TaskRole")) == []
    # No ECR source: neither the lister nor the task may read any source registry of their own.
    assert all(s.get("Sid") != "ReadSourceRegistry" for d in stack.policies("TaskRole") for s in d["Statement"])


def test_include_untagged_false_plans_from_the_ledger_index_without_a_scan(world: World) -> None:
    """Issue 10, defect 1: every includeUntagged false run failed (the lister had no dynamodb:Scan)."""
    src = world.ecr(ACCOUNT_A, SRC_REGION)
    dst = world.ecr(ACCOUNT_A, REGION)
    src.publish(world.images.layout, "multi", "tools/multi", "v1")
    stack = world.deploy(Stack({**ECR_ALL, "includeUntagged": "false"}))

    first = run_pipeline(world, stack, "run-1")
    second = run_pipeline(world, stack, "run-2")

    assert_nothing_refused(world)
    assert first.exit_code == 0 and outcomes("run-1")["tools/multi:v1"][0] == "copied"
    # The second run knows from the ledger that linux/amd64 of the same index landed: nothing to copy.
    landed = dst.digest("mirror/tools/multi", "v1")
    assert second.lister["to_copy"] == 0 and outcomes("run-2") == {"tools/multi:v1": ("skipped", landed)}
    index = f"{RESOURCES['LedgerTable']['Arn']}/index/ByItemType"
    lister_calls = [d for d in world.moto.decisions() if "/ListerFunctionRole/" in d["principal"]]
    assert {"action": "dynamodb:Query", "resource": index} in [
        {k: d[k] for k in ("action", "resource")} for d in lister_calls
    ]
    assert "dynamodb:Scan" not in {d["action"] for d in lister_calls}
    # The no-op run's skip went in one BatchWriteItem (issue 15), under the lister's own grant.
    assert {"action": "dynamodb:BatchWriteItem", "resource": RESOURCES["LedgerTable"]["Arn"]} in [
        {k: d[k] for k in ("action", "resource")} for d in lister_calls
    ]


def test_cross_account_source_role_is_the_only_way_to_the_source(world: World) -> None:
    """With srcRoleArn the stack's own roles have no source grant: the assumed role reads it."""
    admin_b = account_keys(ACCOUNT_B, SRC_REGION, "admin", ADMIN_POLICY)
    src = world.ecr(ACCOUNT_B, SRC_REGION, **admin_b)
    dst = world.ecr(ACCOUNT_A, REGION)
    digest = src.publish(world.images.layout, "app-a", "team/app", "1.0")
    reader = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:ListImages", "ecr:BatchGetImage",
                           "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer"],
                "Resource": f"arn:aws:ecr:{SRC_REGION}:{ACCOUNT_B}:repository/*",
            },
        ],
    }  # fmt: skip
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": [RESOURCES["TaskRole"]["Arn"], RESOURCES["ListerFunctionRole"]["Arn"]]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    iam_b = helper_client("iam", REGION, **admin_b)
    iam_b.create_role(RoleName="EcrTransferSourceReader", AssumeRolePolicyDocument=json.dumps(trust))
    iam_b.put_role_policy(RoleName="EcrTransferSourceReader", PolicyName="read", PolicyDocument=json.dumps(reader))
    role_arn = f"arn:aws:iam::{ACCOUNT_B}:role/EcrTransferSourceReader"
    params = {**ECR_ALL, "srcAccountId": ACCOUNT_B, "srcRoleArn": role_arn}
    stack = world.deploy(Stack(params))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("mirror/team/app", "1.0") == digest
    assert outcomes("run-1") == {"team/app:1.0": ("copied", digest)}
    # The stack's roles only assumed the role; every source read was the role's.
    for role in ("ListerFunctionRole", "TaskRole"):
        source_reads = [
            d for d in world.moto.decisions()
            if f"/{role}/" in d["principal"] and f":{ACCOUNT_B}:repository/" in d["resource"]
        ]  # fmt: skip
        assert source_reads == [], role
        assert "sts:AssumeRole" in world.moto.allowed(role)
    assert registry_refusals(src, [reader]) == []
    assert registry_refusals(src, stack.policies("TaskRole")) != [], "the task role alone could not read it"


def china_registry_with_keys(world: World, key_arn: str | None) -> EcrEmulator:
    """Account B in cn-north-1, reached with an access key pair kept in a Secrets Manager secret."""
    keys = account_keys(ACCOUNT_B, "cn-north-1", "transfer", ADMIN_POLICY)  # the customer's own key policy
    dst = world.ecr(ACCOUNT_B, "cn-north-1", **keys)
    secret = {"access_key_id": keys["aws_access_key_id"], "secret_access_key": keys["aws_secret_access_key"]}
    extra = {"KmsKeyId": key_arn} if key_arn else {}
    helper_client("secretsmanager", REGION).create_secret(Name=SECRET, SecretString=json.dumps(secret), **extra)
    return dst


def customer_key() -> str:
    return str(helper_client("kms", REGION).create_key(Description="ecr-transfer secrets")["KeyMetadata"]["Arn"])


def test_secret_held_keys_with_a_customer_managed_key_run_under_the_template_policies(world: World) -> None:
    """Issue 10, defect 6: a secret encrypted with a customer key needs kms:Decrypt through Secrets Manager."""
    key = customer_key()
    src = world.ecr(ACCOUNT_A, SRC_REGION)
    dst = china_registry_with_keys(world, key)
    digest = src.publish(world.images.layout, "app-b", "team/app", "2.0")
    params = {
        **ECR_ALL,
        "destRegion": "cn-north-1",
        "destAccountId": ACCOUNT_B,
        "destCredential": SECRET,
        "credentialKmsKey": key,
    }
    stack = world.deploy(Stack(params))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("mirror/team/app", "2.0") == digest
    decrypts = [d for d in world.moto.decisions() if d["action"] == "kms:Decrypt"]
    assert {d["principal"].split("/")[1] for d in decrypts} == {"ListerFunctionRole", "TaskRole"}
    assert {d["resource"] for d in decrypts} == {key}


def test_secret_held_source_keys_are_the_only_way_to_a_source_in_the_other_partition(world: World) -> None:
    """srcCredential: the task and the lister read the China registry with the secret's keys only."""
    src = china_registry_with_keys(world, None)
    dst = world.ecr(ACCOUNT_A, REGION)
    digest = src.publish(world.images.layout, "app-a", "team/app", "3.0")
    params = {**ECR_ALL, "srcRegion": "cn-north-1", "srcAccountId": ACCOUNT_B, "srcCredential": SECRET}
    stack = world.deploy(Stack(params))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("mirror/team/app", "3.0") == digest
    for role in ("ListerFunctionRole", "TaskRole"):
        assert "secretsmanager:GetSecretValue" in world.moto.allowed(role)
        source = [d for d in world.moto.decisions() if f"/{role}/" in d["principal"] and ACCOUNT_B in d["resource"]]
        assert source == [], role
    statements = [s for d in stack.policies("TaskRole") for s in d["Statement"]]
    assert all(s.get("Sid") != "ReadSourceRegistry" for s in statements)


def test_without_the_kms_key_parameter_a_customer_encrypted_secret_is_refused(world: World) -> None:
    key = customer_key()
    world.ecr(ACCOUNT_A, SRC_REGION).publish(world.images.layout, "app-b", "team/app", "2.0")
    china_registry_with_keys(world, key)
    params = {**ECR_ALL, "destRegion": "cn-north-1", "destAccountId": ACCOUNT_B, "destCredential": SECRET}
    stack = world.deploy(Stack(params))

    with pytest.raises(ConfigError, match=f"{SECRET}: cannot read the secret in {REGION}"):
        run_pipeline(world, stack)
    assert ("ListerFunctionRole", "kms:Decrypt", key) in world.moto.refused()


def test_kms_encrypted_destination_repositories_are_created_under_the_template_policies(world: World) -> None:
    key = customer_key()
    src = world.ecr(ACCOUNT_A, SRC_REGION)
    dst = world.ecr(ACCOUNT_A, REGION)
    digest = src.publish(world.images.layout, "single", "base/os", "12")
    stack = world.deploy(Stack({**ECR_ALL, "repoEncryption": "KMS", "repoKmsKey": key, "repoTags": "team=platform"}))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("mirror/base/os", "12") == digest
    (repo,) = helper_client("ecr", REGION).describe_repositories(repositoryNames=["mirror/base/os"])["repositories"]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}
    # What ECR does with the caller's permissions when it creates a KMS-encrypted repository.
    granted = {d["action"] for d in world.moto.decisions() if "/TaskRole/" in d["principal"] and d["resource"] == key}
    assert granted == {"kms:CreateGrant", "kms:DescribeKey"}


def test_the_deploy_helper_custom_resources_run_under_the_template_policies(world: World) -> None:
    admin_lambda = helper_client("lambda", REGION)
    lambda_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    helper_client("iam", REGION).create_role(RoleName="carrier", AssumeRolePolicyDocument=json.dumps(lambda_trust))
    image = f"{ACCOUNT_A}.dkr.ecr.{REGION}.amazonaws.com/dthecrstack/copier@sha256:" + "c" * 64
    admin_lambda.create_function(
        FunctionName=COPIER_FUNCTION,
        PackageType="Image",
        Code={"ImageUri": image},
        Role=f"arn:aws:iam::{ACCOUNT_A}:role/carrier",
    )
    version = admin_lambda.publish_version(FunctionName=COPIER_FUNCTION)["FunctionArn"]
    helper_client("stepfunctions", REGION).create_state_machine(
        name=STATE_MACHINE.rsplit(":", 1)[1],
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT_A}:role/machine",
    )
    stack = world.deploy(Stack(ECR_ALL))
    helper_client("s3", REGION).put_object(Bucket=BUCKET, Key="runs/r/work-list.json", Body=b"[]")

    def event(kind: str, request: str, **props: str) -> dict[str, Any]:
        return {"RequestType": request, "ResourceType": kind, "ResourceProperties": props, "LogicalResourceId": kind}

    with stack.as_role("DeployHelperFunctionRole"):
        clients = custom_resource.Clients()
        copier = custom_resource.dispatch(event("Custom::CopierImage", "Create", FunctionVersionArn=version), clients)
        started = custom_resource.dispatch(
            event("Custom::StartExecution", "Create", StateMachineArn=STATE_MACHINE, Input="{}"), clients
        )
        role = custom_resource.ecs_service_linked_role(clients.get("iam"), wait=0)
        custom_resource.dispatch(event("Custom::EmptyBucket", "Delete", BucketName=BUCKET), clients)

    assert_nothing_refused(world)
    # (moto's ResolvedImageUri appends a digest of its own to the URI; the repository is what counts.)
    assert copier["RepositoryArn"] == f"arn:aws:ecr:{REGION}:{ACCOUNT_A}:repository/dthecrstack/copier"
    assert started["ExecutionArn"].startswith(STATE_MACHINE.replace(":stateMachine:", ":execution:"))
    assert role == {"Created": "true"}
    assert helper_client("s3", REGION).list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert world.moto.allowed("DeployHelperFunctionRole") == {
        "lambda:GetFunction",
        "states:StartExecution",
        "iam:CreateServiceLinkedRole",
        "s3:ListBucket",
        "s3:DeleteObject",
    }


# -- a grant taken away must fail the run -------------------------------------------------------
def test_a_lister_without_the_ledger_index_grant_fails_an_include_untagged_false_run(world: World) -> None:
    """What defect 1 looked like: the planner reads the latest outcomes, the lister may not."""
    world.ecr(ACCOUNT_A, SRC_REGION).publish(world.images.layout, "multi", "tools/multi", "v1")
    world.ecr(ACCOUNT_A, REGION)
    stack = world.deploy(
        Stack({**ECR_ALL, "includeUntagged": "false"}, without=("ListerFunctionRole", "LatestOutcomes"))
    )

    with pytest.raises(ConfigError, match=f"no access to DynamoDB table '{TABLE}'"):
        run_pipeline(world, stack)
    index = f"{RESOURCES['LedgerTable']['Arn']}/index/ByItemType"
    assert world.moto.refused() == [("ListerFunctionRole", "dynamodb:Query", index)]


def test_a_task_role_without_create_repository_fails_every_image_and_says_why(world: World) -> None:
    src = world.ecr(ACCOUNT_A, SRC_REGION)
    world.ecr(ACCOUNT_A, REGION)
    src.publish(world.images.layout, "app-a", "team/app", "1.0")
    stack = world.deploy(Stack(ECR_ALL, without=("TaskRole", "ecr:CreateRepository")))

    run = run_pipeline(world, stack)

    assert run.exit_code == 0 and run.finished is not None and run.finished["failed"] == 1
    assert outcomes("run-1") == {"team/app:1.0": ("failed", None)}
    repository = f"arn:aws:ecr:{REGION}:{ACCOUNT_A}:repository/mirror/team/app"
    assert ("TaskRole", "ecr:CreateRepository", repository) in world.moto.refused()
