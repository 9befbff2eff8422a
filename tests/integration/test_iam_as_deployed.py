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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from ecr_transfer.cloud import batch, copier_task, custom_resource
from ecr_transfer.errors import ConfigError
from ecr_transfer.ledger.dynamodb import DynamoDBLedger
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry

from .ecr_support import ACCOUNT_A, ACCOUNT_B, EcrEmulator, account_keys, helper_client
from .iam_world import (
    ADMIN_POLICY,
    BUCKET,
    COPIER_FUNCTION,
    LIST_PARAMETER,
    REGION,
    RESOURCES,
    STATE_MACHINE,
    TABLE,
    IamMoto,
    Stack,
    registry_checks,
    registry_refusals,
)
from .test_handlers import LambdaContext, load_handler

pytest_plugins = ["integration.iam_world"]
SRC_REGION = "us-west-2"
SECRET = "ecr-transfer/china-keys"


@dataclass
class World:
    """The registries and the admin identity around one deployed stack."""

    moto: IamMoto
    images: SampleImages
    registry_factory: Callable[..., LocalRegistry]
    monkeypatch: pytest.MonkeyPatch
    endpoints: dict[str, str] = field(default_factory=dict)
    insecure: list[str] = field(default_factory=list)
    emulators: list[EcrEmulator] = field(default_factory=list)

    def ecr(self, account: str, region: str, **credentials: str) -> EcrEmulator:
        registry = self.registry_factory(auth=("AWS", EcrEmulator.token_password(account)))
        emulator = EcrEmulator(registry, account, region, **credentials)
        self.emulators.append(emulator)
        self.endpoints[emulator.host] = emulator.endpoint
        self.insecure.append(emulator.address)
        return emulator

    def plain_registry(self) -> LocalRegistry:
        registry = self.registry_factory()
        self.insecure.append(registry.host)
        return registry

    def settings_env(self) -> dict[str, str]:
        """Where the emulated registries really are: settings a test adds to the template's environment."""
        return {"REGISTRY_ENDPOINTS": json.dumps(self.endpoints), "INSECURE_REGISTRIES": ",".join(self.insecure)}

    def deploy(self, stack: Stack) -> Stack:
        """What CloudFormation creates for the code to use; then IAM is enforced."""
        ddb = helper_client("dynamodb", REGION)
        ddb.create_table(**stack.ledger_table())
        helper_client("s3", REGION).create_bucket(Bucket=BUCKET)
        helper_client("ssm", REGION).put_parameter(Name=LIST_PARAMETER, Value=stack.image_list(), Type="String")
        stack.create_roles()
        for emulator in self.emulators:
            emulator.registry.reset_requests()  # what publishing the test's images did is not the run's
        self.moto.enforce()
        return stack


@pytest.fixture
def world(
    iam_moto: IamMoto,
    oci_images: SampleImages,
    registry_factory: Callable[..., LocalRegistry],
    monkeypatch: pytest.MonkeyPatch,
    skopeo_recorder: Any,
) -> Iterator[World]:
    # An administrator of account A for set-up and checks: the default `testing` keys are no
    # IAM user, and nothing unauthenticated passes once IAM is enforced.
    admin = account_keys(ACCOUNT_A, REGION, "admin", ADMIN_POLICY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", admin["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", admin["aws_secret_access_key"])
    boto3.DEFAULT_SESSION = None  # it keeps the credentials it resolved first
    world = World(iam_moto, oci_images, registry_factory, monkeypatch)
    yield world
    for emulator in world.emulators:
        emulator.stop()


@dataclass
class Run:
    lister: dict[str, Any]
    items: list[dict[str, Any]]
    exit_code: int | None
    recorded: dict[str, Any] | None
    finished: dict[str, Any] | None


def run_pipeline(world: World, stack: Stack, run_id: str = "run-1") -> Run:
    """One run as the state machine drives it: lister, one copier task per batch, recorder, finish."""
    extra = world.settings_env()
    with stack.as_role("ListerFunctionRole", {**stack.function_env("ListerFunction"), **extra}):
        from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

        DEFAULT_PROVIDERS.clear()  # Powertools keeps its SSM client (and its credentials) per process
        payload = {"run_id": run_id, "execution_arn": f"{STATE_MACHINE}:{run_id}", "input": {}}
        lister = load_handler("lister").lambda_handler(payload, LambdaContext())
    body = helper_client("s3", REGION).get_object(Bucket=BUCKET, Key=lister["work_list_key"])["Body"].read()
    items = json.loads(body)
    if not items:
        return Run(lister, [], None, None, finish(stack, run_id))
    # The task definition's environment plus the overrides the state machine sets per batch.
    task_env = {
        **stack.task_env(),
        **extra,
        batch.RUN_ID: run_id,
        batch.WORK_BUCKET: lister["bucket"],
        batch.OUTCOME_PREFIX: lister["outcome_prefix"],
        batch.WORK_ITEMS: json.dumps(items),
    }
    with stack.as_role("TaskRole", task_env) as environ:
        code = copier_task.run_batch(environ)
    event = {
        "action": "record_batch",
        "run_id": run_id,
        "bucket": lister["bucket"],
        "outcome_prefix": lister["outcome_prefix"],
        "items": items,
        "task_arn": "arn:aws:ecs:us-east-1:123456789012:task/c/1",
    }
    with stack.as_role("RecorderFunctionRole", stack.function_env("RecorderFunction")):
        recorded = load_handler("recorder").lambda_handler(event, LambdaContext())
    return Run(lister, items, code, recorded, finish(stack, run_id))


def finish(stack: Stack, run_id: str) -> dict[str, Any]:
    with stack.as_role("RecorderFunctionRole", stack.function_env("RecorderFunction")):
        result: dict[str, Any] = load_handler("recorder").lambda_handler(
            {"action": "finish_run", "run_id": run_id}, LambdaContext()
        )
    return result


def outcomes(run_id: str) -> dict[str, tuple[str, str | None]]:
    ledger = DynamoDBLedger(TABLE, client=helper_client("dynamodb", REGION), heartbeat=False)
    return {o.source.split("/", 1)[1]: (o.status, o.target_digest) for o in ledger.outcomes(run_id)}


def assert_nothing_refused(world: World) -> None:
    assert world.moto.refused() == [], "IAM refused requests the deployed stack makes"


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
    assert registry_refusals(src, task) == [] and registry_refusals(dst, task) == []
    assert {c.action for c in registry_checks(dst)} >= {"ecr:PutImage", "ecr:CompleteLayerUpload"}
    assert {c.action for c in registry_checks(src)} >= {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}


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


def china_destination_with_keys(world: World, key_arn: str | None) -> EcrEmulator:
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
    dst = china_destination_with_keys(world, key)
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


def test_without_the_kms_key_parameter_a_customer_encrypted_secret_is_refused(world: World) -> None:
    key = customer_key()
    world.ecr(ACCOUNT_A, SRC_REGION).publish(world.images.layout, "app-b", "team/app", "2.0")
    china_destination_with_keys(world, key)
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
