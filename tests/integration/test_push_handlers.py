"""On push: the intake function turns a burst of ECR push events into one execution, and the
lister of a push-triggered run plans the pushed images only. Events from events/; moto as in
test_handlers (source ECR us-west-2 holds team/app 1.0 and 2.0, the destination only 1.0).

No push is lost to a busy ledger: a lister that finds another run holding it raises
LedgerBusyError, which the state machine retries for hours before giving up (checked on the
definition in tests/unit/test_statemachine_definition.py); here both orders are played out.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ecr_transfer.cloud import batch
from ecr_transfer.model import now

from .handler_support import (
    ACCOUNT,
    BUCKET,
    LIST_PARAMETER,
    SRC_HOST,
    SRC_REGION,
    LambdaContext,
    event,
    ledger,
    stub_state_machine,
)
from .handler_support import load_handler as load

pytest_plugins = ["integration.handler_support"]

DIGEST = "sha256:" + "2" * 64  # what events/push_same_account.json says was pushed


def planned_sources(result: dict[str, Any]) -> list[str]:
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=result["work_list_key"])["Body"].read()
    return [i.source for i in batch.parse_items(body.decode())]


def pushed(tag: str, run_id: str) -> dict[str, Any]:
    base = event("list_pushed_images.json")
    base["run_id"] = run_id
    base["input"]["pushed"][0]["tag"] = tag
    return base


@pytest.fixture
def state_machine(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    sfn = boto3.client("stepfunctions")
    arn = stub_state_machine(sfn)
    # What template.yaml gives PushIntakeFunction.
    monkeypatch.setenv("ECR_TRANSFER_STATE_MACHINE_ARN", arn)
    monkeypatch.setenv("SRC_ACCOUNT_ID", ACCOUNT)
    monkeypatch.setenv("SRC_REGION", SRC_REGION)
    return sfn, arn


def test_a_burst_of_pushes_starts_one_execution_and_its_redelivery_starts_none(state_machine: Any) -> None:
    sfn, arn = state_machine
    app = load("push_intake")

    first = app.lambda_handler(event("push_same_account.json"), LambdaContext())
    again = app.lambda_handler(event("push_same_account.json"), LambdaContext())  # SQS redelivers

    assert first["pushed"] == 2 and first["ignored"] == 0 and len(first["executions"]) == 1
    assert again["executions"] == first["executions"]
    (execution,) = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert execution["name"] == first["executions"][0]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started == {
        "trigger": "push",
        "pushed": [
            {"repository": "team/app", "tag": "2.0", "digest": DIGEST, "pushed_at": "2026-12-01T22:30:00Z"},
            {"repository": "team/app", "tag": "latest", "digest": DIGEST, "pushed_at": "2026-12-01T22:30:01Z"},
        ],
    }  # fmt: skip


def test_pushes_to_a_registry_that_is_not_the_source_start_nothing(state_machine: Any) -> None:
    sfn, arn = state_machine
    result = load("push_intake").lambda_handler(event("push_forwarded.json"), LambdaContext())
    assert result == {"pushed": 0, "ignored": 1, "executions": []}
    assert sfn.list_executions(stateMachineArn=arn)["executions"] == []


def test_pushes_forwarded_from_the_source_account_start_a_run(
    state_machine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sfn, arn = state_machine
    monkeypatch.setenv("SRC_ACCOUNT_ID", "111122223333")  # the source registry is in another account
    result = load("push_intake").lambda_handler(event("push_forwarded.json"), LambdaContext())
    assert result["pushed"] == 1 and len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 1


def test_a_pushed_run_plans_only_the_pushed_image_if_the_selection_has_it(lambda_env: dict[str, str]) -> None:
    app = load("lister")

    result = app.lambda_handler(pushed("2.0", "push-1"), LambdaContext())

    assert (result["trigger"], result["planned"], result["to_copy"], result["skipped"]) == ("push", 1, 1, 0)
    assert planned_sources(result) == [f"{SRC_HOST}/team/app:2.0"]
    ledger().finish_run("push-1", now())
    # Pushed, but no longer selected: the list now names 1.0 only. Nothing is planned, no task starts.
    boto3.client("ssm").put_parameter(Name=LIST_PARAMETER, Value="team/app:1.0", Type="String", Overwrite=True)
    result = app.lambda_handler(pushed("2.0", "push-2"), LambdaContext())
    assert (result["planned"], result["to_copy"]) == (0, 0)


def test_a_pushed_tag_dropped_by_the_tag_filters_is_not_planned(
    lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAG_EXCLUDE", r"2\..*")
    result = load("lister").lambda_handler(pushed("2.0", "push-1"), LambdaContext())
    assert (result["planned"], result["to_copy"]) == (0, 0)


def test_a_push_during_a_run_waits_for_the_ledger_and_then_plans_the_pushed_image(lambda_env: dict[str, str]) -> None:
    app = load("lister")
    ledger().start_run("daily", now(), "arn:aws:states:::execution:daily")

    with pytest.raises(Exception) as busy:
        app.lambda_handler(pushed("2.0", "push-1"), LambdaContext())
    assert type(busy.value).__name__ == "LedgerBusyError"  # the name the definition retries on

    ledger().finish_run("daily", now())
    retried = app.lambda_handler(pushed("2.0", "push-1"), LambdaContext())  # Step Functions' retry
    assert planned_sources(retried) == [f"{SRC_HOST}/team/app:2.0"]


def test_a_run_during_a_push_waits_for_the_ledger_and_then_plans_everything(lambda_env: dict[str, str]) -> None:
    app = load("lister")
    assert app.lambda_handler(pushed("2.0", "push-1"), LambdaContext())["to_copy"] == 1

    with pytest.raises(Exception) as busy:
        app.lambda_handler(event("list_images.json") | {"run_id": "daily"}, LambdaContext())
    assert type(busy.value).__name__ == "LedgerBusyError"

    ledger().finish_run("push-1", now())
    retried = app.lambda_handler(event("list_images.json") | {"run_id": "daily"}, LambdaContext())
    assert (retried["trigger"], retried["planned"], retried["to_copy"]) == ("schedule", 2, 1)
