"""A deployed stack's run under enforced IAM: the world around it and the run as the state machine drives it.

test_iam_as_deployed's scenarios build on this (see that module's docstring).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest

from ecr_transfer.cloud import batch, copier_task, fast_copy
from ecr_transfer.ledger.dynamodb import DynamoDBLedger
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry

from .ecr_support import ACCOUNT_A, EcrEmulator, account_keys, helper_client
from .iam_world import ADMIN_POLICY, BUCKET, LIST_PARAMETER, REGION, STATE_MACHINE, TABLE, IamMoto, Stack
from .test_handlers import LambdaContext, load_handler


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
            emulator.proxy.forget()  # what publishing the test's images did is not the run's
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
    boto3.DEFAULT_SESSION = None


@dataclass
class Run:
    lister: dict[str, Any]
    items: list[dict[str, Any]]
    exit_code: int | None
    recorded: dict[str, Any] | None
    finished: dict[str, Any] | None


def run_pipeline(world: World, stack: Stack, run_id: str = "run-1", *, in_lambda: bool = False) -> Run:
    """One run as the state machine drives it: lister, one copier per batch, recorder, finish.

    The copier is the Fargate task under TaskRole, or (`in_lambda`) the fast path's handler under
    the copier function's role, with that function's environment."""
    extra = world.settings_env()
    with stack.as_role("ListerFunctionRole", {**stack.function_env("ListerFunction"), **extra}):
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
    if in_lambda:
        payload = {"run_id": run_id, "bucket": lister["bucket"], "outcome_prefix": lister["outcome_prefix"],
                   "items": items}  # fmt: skip
        function_env = {**stack.function_env("CopierImageFunction"), **extra, "AWS_LAMBDA_FUNCTION_NAME": "copier"}
        with stack.as_role("CopierImageFunctionRole", function_env) as environ:
            answer = fast_copy.handle(payload, remaining_seconds=lambda: 900, environ=environ)
        code = 0 if answer["finished"] else 1
    else:
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
