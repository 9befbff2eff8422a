"""The cloud glue on its own: batch contract, recorder, copier task exit codes, custom resources."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_transfer.cloud import batch, copier_task, custom_resource, recorder
from ecr_transfer.errors import ConfigError, TransientError
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.model import Outcome, WorkItem, now
from support.fakes import FakeContext, ScriptedCopier

BUCKET = "work"
SRC = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
DST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def item(name: str, reason: str = "not at destination") -> WorkItem:
    return WorkItem(
        source=f"{SRC}/{name}", target=f"{DST}/{name}", action="copy", reason=reason, source_digest="sha256:" + "a" * 64
    )


def copied(work: WorkItem, run_id: str) -> Outcome:
    digest = work.source_digest or ""
    return work.copied(run_id, written=digest, landed=digest, attempts=1, started_at=now(), reason=work.reason)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def ledger() -> Iterator[SQLiteLedger]:
    db = SQLiteLedger(":memory:")
    yield db
    db.close()


# -- batch ----------------------------------------------------------------------------------------
def test_run_ids_cannot_escape_their_prefix() -> None:
    assert batch.work_list_key("r1") == "runs/r1/work-list.json"
    assert batch.outcome_prefix("r1") == "runs/r1/outcomes/"
    for bad in ("", "a/b", "../x/y"):
        with pytest.raises(ValueError):
            batch.run_prefix(bad)


def test_work_list_items_are_compact_and_round_trip() -> None:
    long = item("team/app:1", reason="x" * 1000)
    data = batch.compact(long)
    assert "target_digest" not in data and len(data["reason"]) == batch.MAX_REASON
    (back,) = batch.parse_items(batch.work_list_body([long]).decode())
    assert back == replace(long, reason=data["reason"])


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("not json", "not JSON"), ('{"a": 1}', "JSON array of objects"), ('[{"source": "x"}]', "incomplete")],
)
def test_bad_work_items_are_config_errors(raw: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        batch.parse_items(raw)


def test_outcome_key_depends_on_the_batch_not_its_order() -> None:
    a, b, c = item("a:1"), item("b:1"), item("c:1")
    key = batch.outcome_key("runs/r/outcomes/", [a, b])
    assert key == batch.outcome_key("runs/r/outcomes/", [b, a])
    assert key != batch.outcome_key("runs/r/outcomes/", [a, c])
    assert key.startswith("runs/r/outcomes/") and key.endswith(".json")


# -- recorder -------------------------------------------------------------------------------------
def test_describe_error_leads_with_the_ecs_stop_reason() -> None:
    cause = json.dumps({"StoppedReason": "Task failed to start", "Containers": [{"ExitCode": 2}], "TaskArn": "t"})
    text = recorder.describe_error({"Error": "States.TaskFailed", "Cause": cause})
    assert text == f"States.TaskFailed: Task failed to start, exit code 2 | cause: {cause}"
    assert recorder.describe_error({"Error": "States.Timeout", "Cause": ""}) == "States.Timeout"
    assert recorder.describe_error(None) is None
    lambda_cause = '{"errorMessage": "boom", "errorType": "KeyError"}'
    assert recorder.describe_error({"Error": "KeyError", "Cause": lambda_cause}) == f"KeyError | cause: {lambda_cause}"


def test_record_batch_fills_in_what_the_copier_did_not_write(s3: Any, ledger: SQLiteLedger) -> None:
    ledger.start_run("r", "2030-01-01T00:00:00+00:00")
    done, lost = item("team/a:1"), item("team/b:1")
    written = [
        copied(done, "r"),
        copied(lost, "old-run"),  # another run's file content never counts
    ]
    key = batch.outcome_key("runs/r/outcomes/", [done, lost])
    s3.put_object(Bucket=BUCKET, Key=key, Body=batch.outcomes_body(written))
    event = {
        "action": "record_batch",
        "run_id": "r",
        "bucket": BUCKET,
        "outcome_prefix": "runs/r/outcomes/",
        "items": [batch.compact(done), batch.compact(lost)],
        "task_arn": "arn:task/1",
    }

    assert recorder.handle(event, ledger=ledger, s3=s3) == {
        "recorded": 2,
        "copied": 1,
        "failed": 1,
        "skipped": 0,
        "failures_by_cause": {"TaskFailed": 1},
    }
    # Recording twice (a retried Lambda) leaves the same ledger.
    recorder.handle(event, ledger=ledger, s3=s3)
    outcomes = {o.source: o for o in ledger.outcomes("r")}
    assert outcomes[done.source].status == "copied"
    assert outcomes[lost.source].status == "failed" and "arn:task/1" in (outcomes[lost.source].error or "")


def test_finish_run_lists_a_bounded_sample_of_failures(ledger: SQLiteLedger) -> None:
    ledger.start_run("r", "2030-01-01T00:00:00+00:00")
    for n in range(15):
        ledger.record(recorder.failed_outcome(item(f"team/x:{n}"), "r", "e" * 2000))
    summary = recorder.handle({"action": "finish_run", "run_id": "r"}, ledger=ledger, s3=None)
    assert (summary["state"], summary["failed"]) == ("finished", 15)
    assert len(summary["failures"]) == recorder.MAX_FAILURES_REPORTED
    assert all(len(f["error"]) == recorder.MAX_FAILURE_TEXT for f in summary["failures"])
    assert len(json.dumps(summary)) < 10_000, "the summary travels in the state machine payload"


def test_unknown_recorder_action(ledger: SQLiteLedger) -> None:
    with pytest.raises(ValueError, match="unknown recorder action"):
        recorder.handle({"action": "nope"}, ledger=ledger, s3=None)


# -- copier task ----------------------------------------------------------------------------------
def task_env(items: list[WorkItem]) -> dict[str, str]:
    return {
        batch.RUN_ID: "r",
        batch.WORK_BUCKET: BUCKET,
        batch.OUTCOME_PREFIX: "runs/r/outcomes/",
        batch.WORK_ITEMS: json.dumps([batch.compact(i) for i in items]),
        "SOURCE_TYPE": "Amazon_ECR",
        "SRC_REGION": "us-west-2",
        "SRC_LIST": "ALL",
        "DEST_REGION": "us-east-1",
    }


def read_written(s3: Any, items: list[WorkItem]) -> list[Outcome]:
    key = batch.outcome_key("runs/r/outcomes/", items)
    return batch.parse_outcomes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_copier_task_writes_one_outcome_per_item(s3: Any) -> None:
    items = [item("team/a:1"), item("team/crash:1")]
    context = FakeContext()
    code = copier_task.run_batch(
        task_env(items), s3=s3, build=lambda s, e: context, image_list_loader=None, copier_factory=ScriptedCopier
    )
    assert code == 0 and context.closed
    outcomes = {o.source: o for o in read_written(s3, items)}
    assert outcomes[items[0].source].status == "copied"
    assert outcomes[items[1].source].status == "failed"
    assert outcomes[items[1].source].error == "unexpected error: RuntimeError: a bug"


def test_copier_task_setup_errors_become_outcomes_not_retries(s3: Any) -> None:
    items = [item("team/a:1")]

    def broken(settings: Any, environ: Mapping[str, str]) -> Any:
        raise ConfigError("srcCredential: secret not found")

    assert copier_task.run_batch(task_env(items), s3=s3, build=broken, image_list_loader=None) == 0
    (outcome,) = read_written(s3, items)
    assert outcome.status == "failed" and "secret not found" in (outcome.error or "")


def test_copier_task_transient_setup_errors_exit_for_a_retry(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def flaky(settings: Any, environ: Mapping[str, str]) -> Any:
        raise TransientError("sts: throttled")

    env = task_env([item("team/a:1")])
    with pytest.raises(TransientError):
        copier_task.run_batch(env, s3=s3, build=flaky, image_list_loader=None)
    monkeypatch.setattr(copier_task, "run_batch", lambda: copier_task.run_batch(env, s3=s3, build=flaky))
    assert copier_task.main() == 1


@pytest.mark.parametrize("drop", [batch.WORK_ITEMS, batch.RUN_ID, batch.WORK_BUCKET, batch.OUTCOME_PREFIX])
def test_copier_task_without_its_batch_exits_2(drop: str) -> None:
    env = task_env([item("team/a:1")])
    del env[drop]
    assert copier_task.run_batch(env) == 2


def test_copier_task_with_garbage_items_exits_2() -> None:
    env = task_env([]) | {batch.WORK_ITEMS: "[{"}
    assert copier_task.run_batch(env) == 2


# -- custom resources -----------------------------------------------------------------------------
class LambdaStub:
    def __init__(self, code: dict[str, str]) -> None:
        self.code = code
        self.asked: list[str] = []

    def get_function(self, FunctionName: str) -> dict[str, Any]:  # boto3's parameter name
        self.asked.append(FunctionName)
        return {"Code": self.code}


def test_copier_image_is_taken_by_digest_with_its_repository() -> None:
    digest = "sha256:" + "c" * 64
    uri = f"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/dthecrstack1a2b/copierimagefunction9f8e@{digest}"
    stub = LambdaStub({"ImageUri": uri.replace("@" + digest, ":copier-v1"), "ResolvedImageUri": uri})
    version = "arn:aws-cn:lambda:cn-north-1:123456789012:function:DTHECRStack-CopierImageFunction-X:3"
    data = custom_resource.copier_image(version, stub)
    assert stub.asked == [version]
    assert data == {
        "ImageUri": uri,
        "RepositoryName": "dthecrstack1a2b/copierimagefunction9f8e",
        "RepositoryArn": "arn:aws-cn:ecr:cn-north-1:123456789012:repository/dthecrstack1a2b/copierimagefunction9f8e",
    }
    with pytest.raises(ValueError, match="not an ECR image URI"):
        custom_resource.copier_image(version, LambdaStub({"ImageUri": "docker.io/library/python:3"}))


class SfnStub:
    class exceptions:  # mirrors boto3's client.exceptions
        class ExecutionAlreadyExists(Exception):
            pass

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, str]] = []

    def start_execution(self, **kwargs: str) -> dict[str, str]:
        self.calls.append(kwargs)
        if len(self.calls) <= self.failures:
            raise RuntimeError("AccessDeniedException: the role is not there yet")
        return {"executionArn": "arn:exec/1"}


def test_first_run_survives_iam_propagation_delay() -> None:
    stub = SfnStub(failures=2)
    data = custom_resource.start_execution("arn:sm", '{"trigger": "deployment"}', stub, delay=0)
    assert data == {"ExecutionArn": "arn:exec/1"} and len(stub.calls) == 3
    assert len({c["name"] for c in stub.calls}) == 1, "retries reuse the name: at most one run starts"
    with pytest.raises(RuntimeError):
        custom_resource.start_execution("arn:sm", "{}", SfnStub(failures=9), attempts=2, delay=0)


def test_empty_bucket_deletes_every_page(s3: Any) -> None:
    for n in range(1005):
        s3.put_object(Bucket=BUCKET, Key=f"runs/r/outcomes/{n}.json", Body=b"[]")
    assert custom_resource.empty_bucket(BUCKET, s3) == 1005
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
    assert custom_resource.empty_bucket("gone-already", s3) == 0


def cfn_event(kind: str, request: str, **props: str) -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResourceType": kind,
        "ResponseURL": "https://example.invalid/response",
        "StackId": "arn:stack",
        "RequestId": "abcdef0123",
        "LogicalResourceId": "Thing",
        "ResourceProperties": props,
    }


def test_every_request_is_answered() -> None:
    sent: list[tuple[str, str, dict[str, Any], str]] = []

    def send(event: Mapping[str, Any], status: str, physical: str, data: Mapping[str, Any], reason: str) -> None:
        sent.append((status, physical, dict(data), reason))

    clients = custom_resource.Clients(lambda_=LambdaStub({}), sfn=SfnStub(0), s3=None)
    custom_resource.handle(cfn_event("Custom::CopierImage", "Delete", FunctionVersionArn="x"), clients, send)
    custom_resource.handle(cfn_event("Custom::StartExecution", "Delete"), clients, send)
    custom_resource.handle(cfn_event("Custom::CopierImage", "Create", FunctionVersionArn="arn:aws:x:1"), clients, send)
    assert [s[0] for s in sent] == ["SUCCESS", "SUCCESS", "FAILED"]
    assert sent[0][1] == "Thing-abcdef01"
    assert sent[2][3].startswith("KeyError")


def test_the_ecs_service_linked_role_is_created_once_and_an_existing_one_is_fine() -> None:
    """Issue 10: a fresh account fails AWS::ECS::Cluster until AWSServiceRoleForECS exists."""
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        assert custom_resource.ecs_service_linked_role(iam, wait=0) == {"Created": "true"}
        (role,) = iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]
        # (AWS names it AWSServiceRoleForECS; moto derives AWSServiceRoleForecs from the service name.)
        assert role["RoleName"].lower() == "awsservicerolefor" + "ecs"
        assert custom_resource.ecs_service_linked_role(iam, wait=0) == {"Created": "false"}
        sent: list[str] = []
        custom_resource.handle(
            cfn_event("Custom::EcsServiceLinkedRole", "Delete"),
            custom_resource.Clients(iam=iam),
            lambda event, status, physical, data, reason: sent.append(status),
        )
        assert sent == ["SUCCESS"]
        assert len(iam.list_roles(PathPrefix="/aws-service-role/ecs.amazonaws.com/")["Roles"]) == 1, "never deleted"


def test_the_ecs_service_linked_role_taken_answer_of_iam_means_it_exists() -> None:
    from botocore.stub import Stubber

    iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(iam) as stub:
        message = "Service role name AWSServiceRoleForECS has been taken in this account, please try a different suffix"
        stub.add_client_error("create_service_linked_role", "InvalidInput", message)
        assert custom_resource.ecs_service_linked_role(iam, wait=0) == {"Created": "false"}
        stub.add_client_error("create_service_linked_role", "InvalidInput", "AWSServiceName is not a valid service")
        with pytest.raises(iam.exceptions.InvalidInputException):
            custom_resource.ecs_service_linked_role(iam, wait=0)
