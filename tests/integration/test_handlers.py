"""The Lambda handlers as Lambda runs them, against moto (SSM, S3, DynamoDB, ECR, Step Functions).

The events are the files in events/ (the same ones `sam local invoke -e` uses); only the
bucket placeholders are filled in. Source and destination are two ECR registries (moto, two
regions), so the lister plans through the real ECR catalog: one tag is already at the
destination with the same digest, one is not.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import boto3
import pytest

from ecr_transfer.cloud import batch
from ecr_transfer.model import Outcome

from .handler_support import (
    BUCKET,
    DST_HOST,
    LIST_PARAMETER,
    SRC_HOST,
    LambdaContext,
    emitted_metrics,
    event,
    ledger,
    load_handler,
    manifest,
)

pytest_plugins = ["integration.handler_support"]


def test_lister_plans_records_skips_and_writes_the_work_list(
    lambda_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    app = load_handler("lister")
    result = app.lambda_handler(event("list_images.json"), LambdaContext())

    assert (result["planned"], result["skipped"], result["to_copy"]) == (2, 1, 1)
    assert result["bucket"] == BUCKET and result["concurrency"] == 10 and result["batch_size"] == 1
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=result["work_list_key"])["Body"].read()
    (item,) = batch.parse_items(body.decode())
    assert item.source == f"{SRC_HOST}/team/app:2.0" and item.target == f"{DST_HOST}/team/app:2.0"
    assert item.action == "copy" and item.source_digest == manifest("2")[1]
    (skipped,) = ledger().outcomes("sam-local-run")
    assert skipped.status == "skipped" and skipped.source == f"{SRC_HOST}/team/app:1.0"
    assert ledger().runs()[0].state == "running"
    output = capsys.readouterr().out
    assert emitted_metrics(output) == {
        "RunsStarted": 1.0,
        "ImagesPlanned": 2.0,
        "ImagesSkipped": 1.0,
        "ImagesToCopy": 1.0,
    }
    assert '"correlation_id":"sam-local-run"' in output.replace(" ", "")


def test_lister_reads_a_new_list_from_ssm_on_the_next_run(lambda_env: dict[str, str]) -> None:
    app = load_handler("lister")
    for run_id in ("first", "warm"):  # the second is a warm start: the list may be cached
        assert app.lambda_handler(event("list_images.json") | {"run_id": run_id}, LambdaContext())["planned"] == 2
        ledger().finish_run(run_id, "2030-01-01T00:00:00+00:00")
    boto3.client("ssm").put_parameter(Name=LIST_PARAMETER, Value="team/app:1.0", Type="String", Overwrite=True)
    result = app.lambda_handler(event("list_images.json") | {"run_id": "second"}, LambdaContext())
    assert (result["planned"], result["to_copy"]) == (1, 0)


def test_lister_errors_raise_for_the_state_machine(lambda_env: dict[str, str]) -> None:
    boto3.client("ssm").put_parameter(Name=LIST_PARAMETER, Value="team/app:1.0,Bad Ref!", Type="String", Overwrite=True)
    app = load_handler("lister")
    with pytest.raises(Exception) as raised:
        app.lambda_handler(event("list_images.json"), LambdaContext())
    assert type(raised.value).__name__ == "ConfigError"  # the name the state machine's Catch sees


def test_recorder_records_the_batch_the_copier_wrote(
    lambda_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    payload = event("record_batch.json")
    items = batch.parse_items(payload["items"])
    written = [
        Outcome(
            run_id="sam-local-run",
            source=i.source,
            target=i.target,
            status="copied",
            source_digest=i.source_digest,
            target_digest=i.source_digest,
            attempts=1,
        )
        for i in items
    ]
    key = batch.outcome_key(payload["outcome_prefix"], items)
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=batch.outcomes_body(written))

    app = load_handler("recorder")
    result = app.lambda_handler(payload, LambdaContext(function_name="DTHECRStack-RecordOutcomeFunction"))

    assert result == {"recorded": 1, "copied": 1, "failed": 0, "skipped": 0, "failures_by_cause": {}}
    (outcome,) = ledger().outcomes("sam-local-run")
    assert outcome.status == "copied" and outcome.target_digest == items[0].source_digest
    assert emitted_metrics(capsys.readouterr().out) == {"ImagesCopied": 1.0, "ImagesSkipped": 0.0, "ImagesFailed": 0.0}


def test_recorder_catch_path_keeps_the_full_cause(lambda_env: dict[str, str]) -> None:
    app = load_handler("recorder")
    result = app.lambda_handler(event("record_failed_batch.json"), LambdaContext())

    assert result["failed"] == 1
    (outcome,) = ledger().outcomes("sam-local-run")
    assert outcome.status == "failed" and outcome.error is not None
    assert outcome.error.startswith("States.TaskFailed: Essential container in task exited, exit code 1 | cause: ")
    assert '"StopCode":"EssentialContainerExited"' in outcome.error


def test_recorder_without_outcome_file_records_failures_naming_the_task(lambda_env: dict[str, str]) -> None:
    app = load_handler("recorder")
    app.lambda_handler(event("record_batch.json"), LambdaContext())
    (outcome,) = ledger().outcomes("sam-local-run")
    assert outcome.status == "failed"
    assert "without writing an outcome" in (outcome.error or "") and "task/DTHECRStack-Cluster" in (outcome.error or "")


def test_finish_run_summarises_and_releases_the_ledger(lambda_env: dict[str, str]) -> None:
    lister_app = load_handler("lister")
    lister_app.lambda_handler(event("list_images.json"), LambdaContext())
    recorder_app = load_handler("recorder")
    recorder_app.lambda_handler(event("record_failed_batch.json"), LambdaContext())

    summary = recorder_app.lambda_handler(event("finish_run.json"), LambdaContext())

    assert summary["state"] == "finished"
    assert (summary["planned"], summary["skipped"], summary["failed"]) == (2, 1, 1)
    assert summary["failures"][0]["source"] == f"{SRC_HOST}/team/app:2.0"
    # The lease is free: the next run starts.
    assert lister_app.lambda_handler(event("list_images.json") | {"run_id": "next"}, LambdaContext())["planned"] == 2


def test_the_recorder_closes_a_failed_run_with_the_listing_cause(lambda_env: dict[str, str]) -> None:
    load_handler("lister").lambda_handler(event("list_images.json"), LambdaContext())
    summary = load_handler("recorder").lambda_handler(event("finish_failed_run.json"), LambdaContext())
    assert summary["state"] == "failed" and summary["error"].startswith("ConfigError | cause: ")


class _Responses(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        _Responses.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def response_url() -> Iterator[str]:
    _Responses.received = []
    server = HTTPServer(("127.0.0.1", 0), _Responses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response"
    server.shutdown()


def test_deploy_helper_starts_the_first_run(lambda_env: dict[str, str], response_url: str) -> None:
    role = boto3.client("iam").create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
    machine = boto3.client("stepfunctions").create_state_machine(
        name="DTHECRStack-ECRReplicationSM", definition=json.dumps(definition), roleArn=role
    )["stateMachineArn"]
    request = event("start_execution.json")
    request["ResponseURL"] = response_url
    request["ResourceProperties"]["StateMachineArn"] = machine

    load_handler("deployer").lambda_handler(request, LambdaContext())

    (response,) = _Responses.received
    assert response["Status"] == "SUCCESS", response["Reason"]
    executions = boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert [e["executionArn"] for e in executions] == [response["Data"]["ExecutionArn"]]
    assert executions[0]["name"].startswith("deploy-")


def test_deploy_helper_reports_failures_instead_of_hanging_the_stack(
    lambda_env: dict[str, str], response_url: str
) -> None:
    request = event("start_execution.json")
    request["ResponseURL"] = response_url
    request["ResourceType"] = "Custom::Unknown"
    load_handler("deployer").lambda_handler(request, LambdaContext())
    (response,) = _Responses.received
    assert response["Status"] == "FAILED" and "Custom::Unknown" in response["Reason"]
    assert response["PhysicalResourceId"].startswith("FirstRun-")


def test_lister_with_src_list_all_ignores_the_blank_list(
    lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the template stores in SSM when srcImageList is empty (SSM rejects an empty value).
    boto3.client("ssm").put_parameter(Name=LIST_PARAMETER, Value=" ", Type="String", Overwrite=True)
    monkeypatch.setenv("SRC_LIST", "ALL")
    result = load_handler("lister").lambda_handler(event("list_images.json"), LambdaContext())
    assert (result["planned"], result["skipped"], result["to_copy"]) == (2, 1, 1)
