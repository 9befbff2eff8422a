"""The world around one state machine run: catalogs, a copier, Lambda/ECS/SNS as the glue sees them.

test_statemachine_contract walks the real definition through it (see that module's docstring).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import boto3

from ecr_transfer.cloud import batch, copier_task, fast_copy, lister, recorder
from ecr_transfer.ledger.dynamodb import DynamoDBLedger
from ecr_transfer.references import ImageRef
from support.asl import ACCOUNT, REGION, STACK, Execution, Stack, StatesError
from support.fakes import FakeContext, ScriptedCopier

SRC_HOST = f"{ACCOUNT}.dkr.ecr.cn-northwest-1.amazonaws.com.cn"
DST_HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com.cn"


class Catalog:
    def __init__(self, registry: str, digests: Mapping[str, str], sizes: Mapping[str, int] | None = None) -> None:
        self.registry = registry
        self.default_registry: str | None = registry
        self._digests = dict(digests)
        self.sizes = dict(sizes or {})
        """repo:tag -> bytes, as ECR's listing says (EcrCatalog.image_size); the fast path bounds by it."""

    def image_size(self, ref: ImageRef) -> int | None:
        return self.sizes.get(f"{ref.repository}:{ref.tag}")

    def all_images(self) -> list[ImageRef]:
        refs = []
        for repo_tag in sorted(self._digests):
            repo, tag = repo_tag.split(":")
            refs.append(ImageRef(self.registry, repo, repo, tag=tag))
        return refs

    def tags(self, repository: ImageRef) -> list[str]:
        return [k.split(":")[1] for k in self._digests if k.split(":")[0] == repository.repository]

    def digests(self, refs: Sequence[ImageRef]) -> list[str | None]:
        return [self._digests.get(f"{r.repository}:{r.tag}") for r in refs]

    def referrers(self, ref: ImageRef) -> list[dict[str, object]] | None:
        return None  # a registry without the referrers API

    def prepare(self, repositories: Sequence[str]) -> None:
        pass


SOURCE_IMAGES = {
    "team/app:1.0": "sha256:" + "1" * 64,
    "team/app:2.0": "sha256:" + "2" * 64,
    "team/broken:1.0": "sha256:" + "3" * 64,
    "base/os:12": "sha256:" + "4" * 64,
}
DEST_IMAGES = {"mirror/team/app:1.0": "sha256:" + "1" * 64}
RESOURCES = {
    "LedgerTable": {"Ref": f"{STACK}-LedgerTable-1ABC"},
    "WorkBucket": {"Ref": "dthecrstack-workbucket-1abc", "Arn": "arn:aws-cn:s3:::dthecrstack-workbucket-1abc"},
    "ImageListParameter": {"Ref": f"/{STACK}/srcImageList"},
    "ListerFunction": {"Arn": f"arn:aws-cn:lambda:{REGION}:{ACCOUNT}:function:{STACK}-ListImagesFunction"},
    "RecorderFunction": {"Arn": f"arn:aws-cn:lambda:{REGION}:{ACCOUNT}:function:{STACK}-RecordOutcomeFunction"},
    "CopierImageFunction.Alias": {
        "Ref": f"arn:aws-cn:lambda:{REGION}:{ACCOUNT}:function:{STACK}-CopyImagesFunction:live"
    },
    "Cluster": {"Arn": f"arn:aws-cn:ecs:{REGION}:{ACCOUNT}:cluster/{STACK}-Cluster-1ABC"},
    "CopierTaskDefinition": {"Ref": f"arn:aws-cn:ecs:{REGION}:{ACCOUNT}:task-definition/{STACK}-copier:1"},
    "NotificationTopic": {"Ref": f"arn:aws-cn:sns:{REGION}:{ACCOUNT}:{STACK}-NotificationTopic-1ABC"},
    "PublicSubnetA": {"Ref": "subnet-0aaaaaaaaaaaaaaaa"},
    "PublicSubnetB": {"Ref": "subnet-0bbbbbbbbbbbbbbbb"},
    "CopierSecurityGroup": {"GroupId": "sg-0cccccccccccccccc"},
}


class World:
    def __init__(self, stack: Stack, *, task_fails: bool = False) -> None:
        self.stack = stack
        self.task_fails = task_fails
        # Exit codes of the next tasks, before the copier runs for real; compact=True writes the
        # cause as Step Functions does (no spaces), else as json.dumps does.
        self.task_exits: list[int] = []
        self.compact_cause = False
        self.definition = stack.definition()
        self.container, self.task_env = stack.task_env()
        self.lister_env = stack.function_env("ListerFunction")
        self.recorder_env = stack.function_env("RecorderFunction")
        self.copier_function_env = stack.function_env("CopierImageFunction")
        self.fast_seconds_left = 900.0
        """What the fast path's Lambda context says is left when an invocation starts."""
        self.fast_failures: list[str] = []
        """Error names the next fast path invocations fail with (as Lambda reports them)."""
        self.fast_answers: list[dict[str, Any]] = []
        self.s3 = boto3.client("s3", region_name=REGION)
        self.s3.create_bucket(
            Bucket=self.lister_env[batch.WORK_BUCKET], CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        table = self.lister_env["ECR_TRANSFER_LEDGER"].removeprefix("dynamodb://")
        self._create_table(table)
        self.ledger = DynamoDBLedger(table, client=boto3.client("dynamodb", region_name=REGION), heartbeat=False)
        self.image_list = "team/app:ALL_TAGS\nteam/broken:1.0\nbase/os:12"
        self.context = FakeContext(source=Catalog(SRC_HOST, SOURCE_IMAGES), destination=Catalog(DST_HOST, DEST_IMAGES))
        self.environments: list[dict[str, str]] = []
        self.overrides_sizes: list[int] = []
        self.notifications: list[dict[str, Any]] = []
        self.lambda_payloads: list[dict[str, Any]] = []

    def _create_table(self, name: str) -> None:
        props = self.stack.resource("LedgerTable")["Properties"]
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
            BillingMode=props["BillingMode"],
        )

    def _load_list(self, name: str) -> str:
        assert name == RESOURCES["ImageListParameter"]["Ref"]
        return self.image_list

    def _build(self, settings: Any, environ: Mapping[str, str]) -> Any:
        return self.context

    def list_images(self, payload: dict[str, Any]) -> Any:
        """The lister Lambda's handler logic, in this world."""
        return lister.list_images(
            payload,
            environ=self.lister_env,
            image_list_loader=self._load_list,
            s3=self.s3,
            ledger=self.ledger,
            build=self._build,
        )

    def call(self, resource: str, params: dict[str, Any]) -> Any:
        if resource == "arn:aws-cn:states:::lambda:invoke":
            return {"StatusCode": 200, "Payload": self._invoke(params["FunctionName"], params["Payload"])}
        if resource == "arn:aws-cn:states:::ecs:runTask.sync":
            return self._run_task(params)
        if resource == "arn:aws-cn:states:::sns:publish":
            assert params["TopicArn"] == RESOURCES["NotificationTopic"]["Ref"]
            assert len(params["Subject"]) <= 100
            self.notifications.append(params)
            return {"MessageId": "m-1"}
        raise AssertionError(f"unexpected service {resource}")

    def _invoke(self, function: str, payload: dict[str, Any]) -> Any:
        self.lambda_payloads.append(payload)
        try:
            if function == RESOURCES["ListerFunction"]["Arn"]:
                return self.list_images(payload)
            if function == RESOURCES["CopierImageFunction.Alias"]["Ref"]:
                return self._copy_in_lambda(payload)
            assert function == RESOURCES["RecorderFunction"]["Arn"]
            assert self.recorder_env["ECR_TRANSFER_LEDGER"] == self.lister_env["ECR_TRANSFER_LEDGER"]
            return recorder.handle(payload, ledger=self.ledger, s3=self.s3)
        except StatesError:
            raise
        except Exception as exc:
            # What Lambda reports for an unhandled exception: the class name is the error.
            raise StatesError(
                type(exc).__name__, json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__})
            ) from exc

    def _copy_in_lambda(self, payload: dict[str, Any]) -> Any:
        """The copier image's Lambda handler logic, with the function's environment from the template."""
        if self.fast_failures:
            error = self.fast_failures.pop(0)
            raise StatesError(error, json.dumps({"errorMessage": "the invocation failed", "errorType": error}))
        self.environments.append(self.copier_function_env)
        answer = fast_copy.handle(
            payload,
            remaining_seconds=lambda: self.fast_seconds_left,
            environ=self.copier_function_env,
            copier="lambda request 1",
            s3=self.s3,
            build=self._build,
            image_list_loader=self._load_list,
            copier_factory=ScriptedCopier,
        )
        self.fast_answers.append(answer)
        return answer

    def _run_task(self, params: dict[str, Any]) -> Any:
        assert params["LaunchType"] == "FARGATE"
        assert params["Cluster"] == RESOURCES["Cluster"]["Arn"]
        assert params["TaskDefinition"] == RESOURCES["CopierTaskDefinition"]["Ref"]
        network = params["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["Subnets"] == ["subnet-0aaaaaaaaaaaaaaaa", "subnet-0bbbbbbbbbbbbbbbb"]
        assert network["SecurityGroups"] == ["sg-0cccccccccccccccc"]
        (override,) = params["Overrides"]["ContainerOverrides"]
        assert override["Name"] == self.container, "the override must name the task definition's container"
        self.overrides_sizes.append(len(json.dumps(params["Overrides"])))
        env = {**self.task_env, **{e["Name"]: e["Value"] for e in override["Environment"]}}
        assert all(isinstance(v, str) for v in env.values()), "ECS environment values are strings"
        self.environments.append(env)
        task = {
            "TaskArn": f"arn:aws-cn:ecs:{REGION}:{ACCOUNT}:task/c/{len(self.environments)}",
            "LastStatus": "STOPPED",
        }
        if self.task_fails or self.task_exits:
            code = self.task_exits.pop(0) if self.task_exits else 137
        else:
            code = copier_task.run_batch(
                env, s3=self.s3, build=self._build, image_list_loader=self._load_list, copier_factory=ScriptedCopier
            )
        if code != 0:
            stopped = {
                **task,
                "StoppedReason": "Essential container in task exited",
                "Containers": [{"ExitCode": code, "Name": self.container}],
            }
            separators = (",", ":") if self.compact_cause else None
            raise StatesError("States.TaskFailed", json.dumps(stopped, separators=separators))
        return task

    def read_items(self, params: dict[str, Any]) -> list[Any]:
        assert params["Resource"] == "arn:aws-cn:states:::s3:getObject"
        body = self.s3.get_object(Bucket=params["Bucket"], Key=params["Key"])["Body"].read()
        items = json.loads(body)
        assert isinstance(items, list)
        return items

    def execute(self, name: str = "run-1", execution_input: Any = None) -> tuple[Execution, str, Any]:
        execution = Execution(self.call, self.read_items)
        context = {
            "Execution": {
                "Name": name,
                "Id": f"arn:aws-cn:states:{REGION}:{ACCOUNT}:execution:{STACK}-ECRReplicationSM:{name}",
            }
        }
        start = {"trigger": "schedule"} if execution_input is None else execution_input
        status, output = execution.run(self.definition, start, context)
        return execution, status, output


PARAMS = {
    "sourceType": "Amazon_ECR",
    "srcRegion": "cn-northwest-1",
    "srcList": "SELECTED",
    "srcImageList": "team/app:ALL_TAGS",
    "destPrefix": "mirror",
    "alarmEmail": "ops@example.com",
}
