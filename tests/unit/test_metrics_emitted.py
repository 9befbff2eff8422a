"""Metrics as the code emits them: the copier task's batch, the recorder's Lambda handler, the lister's counts.

The emitting code runs for real with Powertools printing EMF; the output is parsed as CloudWatch
Logs would and compared name by name and value by value (tests/support/emf.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_transfer import envvars
from ecr_transfer import metrics as m
from ecr_transfer.cloud import batch, emf
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.model import Outcome, now
from integration.handler_support import load_handler
from support.emf import BUCKET, DIMENSIONS, STACK, Stdout, TimedCopier, emitted, run_copier, values, work

ROOT = Path(__file__).resolve().parents[2]


# -- the copier task (Fargate and the Lambda fast path) ---------------------------------------------
def test_the_fargate_copier_emits_tasks_started_bytes_durations_and_push_latency() -> None:
    found = run_copier({})
    assert values(found) == {
        "FargateTasksStarted": [1.0],
        # app: config 100 + layers 1000 + 2000; web: 100 + 400; the conflict copied nothing.
        "BytesCopied": [3600.0],
        "CopyDuration": [2.5, 2.5],
        # Pushed at 09:59:50, landed at 10:00:02.5; web was not pushed and has no latency.
        "PushToLandedLatency": [12.5],
    }
    assert {e.namespace for e in found} == {"ECRTransfer"}
    assert all(e.dimensions == DIMENSIONS for e in found)
    assert {e.name: e.unit for e in found} == {
        "FargateTasksStarted": "Count",
        "BytesCopied": "Bytes",
        "CopyDuration": "Seconds",
        "PushToLandedLatency": "Seconds",
    }
    # The run id rides along as a property (Logs Insights), never as a dimension.
    assert all(e.properties.get("run_id") == "r1" for e in found)


def test_the_copier_in_lambda_counts_lambda_batches_not_fargate_tasks() -> None:
    found = run_copier({envvars.LAMBDA_FUNCTION_NAME: f"{STACK}-CopierFunction"})
    names = [e.name for e in found]
    assert "LambdaBatchesStarted" in names and "FargateTasksStarted" not in names
    assert values(found)["LambdaBatchesStarted"] == [1.0]


def test_copier_metrics_lines_fit_one_docker_log_line() -> None:
    """Docker splits a stdout line longer than 16 KiB into two log events, neither of them JSON."""
    items = [work(f"team/app{n}:1", pushed_at=now()) for n in range(batch.MAX_ITEMS_PER_BATCH)]
    outcomes = [TimedCopier(None, "r").copy(i) for i in items]
    capture = Stdout()
    with capture:
        emf.publish(
            m.copied(items, outcomes, {i.source: 10**12 for i in items}), {envvars.STACK_NAME: STACK}, run_id="r"
        )
    lines = [line for line in capture.text.splitlines() if '"_aws"' in line]
    assert lines and max(len(line.encode()) for line in lines) < 16 * 1024
    assert values(emitted(capture.text))["CopyDuration"] == [2.5] * batch.MAX_ITEMS_PER_BATCH


# -- the recorder's Lambda handler ------------------------------------------------------------------
@dataclass
class LambdaContext:
    function_name: str = f"{STACK}-RecordOutcomeFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:us-east-1:123456789012:function:{STACK}-RecordOutcomeFunction"
    aws_request_id: str = "req-1"


@pytest.fixture
def recorder_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SQLiteLedger]:
    db = tmp_path / "ledger.db"
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        # Not what the module says: the namespace and service come from ecr_transfer.metrics all the same.
        "POWERTOOLS_METRICS_NAMESPACE": "Elsewhere",
        "POWERTOOLS_SERVICE_NAME": "ecr-transfer",
        envvars.LEDGER: str(db),
        envvars.STACK_NAME: STACK,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        ledger = SQLiteLedger(str(db))
        ledger.start_run("r2", now())
        yield ledger
        ledger.close()


def test_the_recorder_emits_outcomes_failures_by_cause_and_the_run_verdict(
    recorder_env: SQLiteLedger, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [work("team/app:1"), work("team/denied:1"), work("team/taken:1"), work("team/lost:1")]
    written = [
        TimedCopier(None, "r2").copy(items[0]),
        items[1].failed("r2", "skopeo: reading manifest: unauthorized: authentication required", attempts=1),
        TimedCopier(None, "r2").copy(items[2]),
        # team/lost has no outcome: the task died before writing it.
    ]
    s3 = boto3.client("s3")
    key = batch.outcome_key("runs/r2/outcomes/", items)
    s3.put_object(Bucket=BUCKET, Key=key, Body=batch.outcomes_body(written))
    app = load_handler("recorder")
    event = {
        "action": "record_batch",
        "run_id": "r2",
        "bucket": BUCKET,
        "outcome_prefix": "runs/r2/outcomes/",
        "items": [batch.compact(i) for i in items],
    }
    result = app.lambda_handler(event, LambdaContext(function_name=f"{STACK}-RecordOutcomeFunction"))
    assert result["failures_by_cause"] == {"AccessDenied": 1, "Conflict": 1, "TaskFailed": 1}
    batch_metrics = emitted(capsys.readouterr().out)
    assert values(batch_metrics) == {
        "ImagesCopied": [1.0],
        "ImagesSkipped": [0.0],
        "ImagesFailed": [3.0],
        "ImageFailures/AccessDenied": [1.0],
        "ImageFailures/Conflict": [1.0],
        "ImageFailures/TaskFailed": [1.0],
    }
    for e in batch_metrics:
        assert e.namespace == "ECRTransfer" and e.properties["run_id"] == "r2"
        expected = {**DIMENSIONS, "Cause": e.dimensions.get("Cause", "")} if e.name == "ImageFailures" else DIMENSIONS
        assert e.dimensions == expected, e

    summary = app.lambda_handler({"action": "finish_run", "run_id": "r2"}, LambdaContext())
    assert summary["state"] == "finished" and summary["failed"] == 3
    assert values(emitted(capsys.readouterr().out)) == {
        "RunsFinished": [1.0],
        "RunsSucceeded": [0.0],
        "RunsFailed": [1.0],
    }


@pytest.mark.parametrize(
    ("summary", "verdict"),
    [
        ({"state": "finished", "failed": 0}, {"RunsFinished": [1.0], "RunsSucceeded": [1.0], "RunsFailed": [0.0]}),
        ({"state": "finished", "failed": 2}, {"RunsFinished": [1.0], "RunsSucceeded": [0.0], "RunsFailed": [1.0]}),
        ({"state": "failed", "failed": 0}, {"RunsFinished": [1.0], "RunsSucceeded": [0.0], "RunsFailed": [1.0]}),
    ],
)
def test_a_run_succeeds_only_when_it_finished_without_a_failed_image(
    summary: dict[str, Any], verdict: dict[str, list[float]], capsys: pytest.CaptureFixture[str]
) -> None:
    emf.publish(m.finished(summary), {envvars.STACK_NAME: STACK})
    assert values(emitted(capsys.readouterr().out)) == verdict


def test_the_lister_counts_what_it_planned(capsys: pytest.CaptureFixture[str]) -> None:
    emf.publish(m.planned({"planned": 5, "to_copy": 2, "skipped": 3}), {envvars.STACK_NAME: STACK}, run_id="r3")
    assert values(emitted(capsys.readouterr().out)) == {
        "RunsStarted": [1.0],
        "ImagesPlanned": [5.0],
        "ImagesToCopy": [2.0],
        "ImagesSkipped": [3.0],
    }


@pytest.mark.parametrize(
    ("status", "error", "cause"),
    [
        ("conflict", "tag 1.0 exists with another digest", "Conflict"),
        ("interrupted", "the run was stopped", "Interrupted"),
        ("failed", "cannot set up the copy: srcCredential: secret not found", "Setup"),
        ("failed", "States.TaskFailed: Essential container in task exited | cause: {}", "TaskFailed"),
        ("failed", "the copy task ended without writing an outcome for this image (task x)", "TaskFailed"),
        ("failed", "toomanyrequests: You have reached your pull rate limit", "RateLimited"),
        ("failed", "reading manifest 1.0: denied: requested access to the resource is denied", "AccessDenied"),
        ("failed", "manifest unknown: manifest unknown", "NotFound"),
        ("failed", "skopeo copy timed out after 1800s", "Timeout"),
        ("failed", "unexpected error: RuntimeError: a bug", "Other"),
    ],
)
def test_failure_causes(status: str, error: str, cause: str) -> None:
    outcome = Outcome(run_id="r", source="s", target="t", status=status, error=error)  # type: ignore[arg-type]
    assert m.failure_cause(outcome) == cause
    assert cause in m.CAUSES


def test_a_pushed_image_carries_its_push_time_through_the_work_list_to_the_copier() -> None:
    from ecr_transfer.pushes import PushedImage, stamped

    def push(tag: str, at: str) -> PushedImage:
        return PushedImage(repository="team/app", tag=tag, digest="sha256:" + "a" * 64, pushed_at=at)

    # Two pushes of one tag in a burst: the copy answers the last one.
    pushes = [push("1", "2026-12-01T09:59:40.000+00:00"), push("1", "2026-12-01T09:59:50.000+00:00")]
    items = stamped([work("team/app:1"), work("team/web:1")], pushes)
    app, web = batch.parse_items(batch.work_list_body(items).decode())
    assert (app.pushed_at, web.pushed_at) == ("2026-12-01T09:59:50.000+00:00", None)
    latency = [
        p.value for p in m.copied([app, web], [TimedCopier(None, "r").copy(app)], {}) if p.metric == m.PUSH_TO_LANDED
    ]
    assert latency == [12.5]
