"""Metrics, dashboard and alarms: what the code emits, and the template graphing and alarming on exactly that.

The emitting code runs here for real (the copier task's batch, the recorder's Lambda handler,
Powertools printing EMF); its output is parsed as CloudWatch would and compared, name by name and
value by value. The dashboard and alarms are read from template.yaml, and after SAM's transform
for both partitions, and compared with ecr_transfer.metrics and with what the code printed.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_transfer import envvars
from ecr_transfer import metrics as m
from ecr_transfer.cloud import batch, copier_task, dashboard, emf
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.model import Outcome, WorkItem, now
from support.cfn import Deployment, Resolver, source_template, transformed

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "work"
STACK = "DTHECRStack"
SRC = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
DST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
STARTED, ENDED = "2026-12-01T10:00:00.000+00:00", "2026-12-01T10:00:02.500+00:00"


@dataclass(frozen=True)
class Emitted:
    namespace: str
    name: str
    unit: str
    dimensions: dict[str, str]
    values: list[float]
    properties: dict[str, Any]


def emitted(output: str) -> list[Emitted]:
    """Every metric in the EMF documents of `output`, read the way CloudWatch Logs reads them."""
    found = []
    for line in output.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            ((*names,),) = directive["Dimensions"]  # one dimension set per document
            for metric in directive["Metrics"]:
                value = doc[metric["Name"]]
                found.append(
                    Emitted(
                        namespace=directive["Namespace"],
                        name=metric["Name"],
                        unit=metric["Unit"],
                        dimensions={n: doc[n] for n in names},
                        values=value if isinstance(value, list) else [value],
                        properties={k: v for k, v in doc.items() if k != "_aws" and k not in names},
                    )
                )
    return found


def values(found: list[Emitted]) -> dict[str, list[float]]:
    return {
        f"{e.name}/{e.dimensions[m.CAUSE_DIMENSION]}" if e.name == "ImageFailures" else e.name: e.values for e in found
    }


DIMENSIONS = {m.STACK_DIMENSION: STACK, m.SERVICE_DIMENSION: m.SERVICE}


# -- the copier task (Fargate and the Lambda fast path) ---------------------------------------------
def manifest(layers: list[int]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": "sha256:" + "c" * 64,
                "size": 100,
            },
            "layers": [{"digest": f"sha256:{n:064x}", "size": size} for n, size in enumerate(layers, 1)],
        }
    ).encode()


class Registry:
    """Registry clients that know one manifest per repository (by any reference)."""

    def __init__(self, manifests: dict[str, bytes]) -> None:
        self.manifests = manifests

    def get(self, registry: str) -> Registry:
        return self

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        return self.manifests.get(repository)

    def has_blob(self, repository: str, digest: str) -> bool:
        return False


@dataclass
class Context:
    clients: Registry

    def close(self) -> None:
        pass


class TimedCopier:
    """Copies in exactly 2.5 s of recorded time; `team/taken` is a tag conflict."""

    def __init__(self, context: Any, run_id: str, **_: Any) -> None:
        self.run_id = run_id

    def copy(self, work: WorkItem) -> Outcome:
        status = "conflict" if "taken" in work.source else "copied"
        return Outcome(
            run_id=self.run_id,
            source=work.source,
            target=work.target,
            status=status,
            attempts=1,
            started_at=STARTED,
            ended_at=ENDED,
            error="tag exists with another digest" if status == "conflict" else None,
        )


def work(name: str, *, pushed_at: str | None = None) -> WorkItem:
    return WorkItem(
        source=f"{SRC}/{name}",
        target=f"{DST}/{name}",
        action="copy",
        reason="not at destination",
        source_digest="sha256:" + "a" * 64,
        pushed_at=pushed_at,
    )


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def run_copier(s3: Any, extra_env: dict[str, str]) -> list[Emitted]:
    items = [work("team/app:1", pushed_at="2026-12-01T09:59:50.000+00:00"), work("team/web:1"), work("team/taken:1")]
    env = {
        batch.RUN_ID: "r1",
        batch.WORK_BUCKET: BUCKET,
        batch.OUTCOME_PREFIX: "runs/r1/outcomes/",
        batch.WORK_ITEMS: json.dumps([batch.compact(i) for i in items]),
        "SOURCE_TYPE": "Amazon_ECR",
        "SRC_REGION": "us-west-2",
        "SRC_LIST": "ALL",
        "DEST_REGION": "us-east-1",
        envvars.STACK_NAME: STACK,
        **extra_env,
    }
    registry = Registry({"team/app": manifest([1000, 2000]), "team/web": manifest([400]), "team/taken": manifest([7])})
    capture = _Stdout()
    with capture:
        code = copier_task.run_batch(
            env, s3=s3, build=lambda s, e: Context(registry), image_list_loader=None, copier_factory=TimedCopier
        )
    assert code == 0
    return emitted(capture.text)


class _Stdout:
    """Powertools prints with print(): capture sys.stdout around one call."""

    def __enter__(self) -> None:
        self._old, sys.stdout = sys.stdout, io.StringIO()

    def __exit__(self, *exc: object) -> None:
        self.text = sys.stdout.getvalue()
        sys.stdout = self._old


def test_the_fargate_copier_emits_tasks_started_bytes_durations_and_push_latency(s3: Any) -> None:
    found = run_copier(s3, {})
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


def test_the_copier_in_lambda_counts_lambda_batches_not_fargate_tasks(s3: Any) -> None:
    found = run_copier(s3, {envvars.LAMBDA_FUNCTION_NAME: f"{STACK}-CopierFunction"})
    names = [e.name for e in found]
    assert "LambdaBatchesStarted" in names and "FargateTasksStarted" not in names
    assert values(found)["LambdaBatchesStarted"] == [1.0]


def test_copier_metrics_lines_fit_one_docker_log_line(s3: Any) -> None:
    """Docker splits a stdout line longer than 16 KiB into two log events, neither of them JSON."""
    items = [work(f"team/app{n}:1", pushed_at=now()) for n in range(batch.MAX_ITEMS_PER_BATCH)]
    outcomes = [TimedCopier(None, "r").copy(i) for i in items]
    capture = _Stdout()
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


def load_handler(function: str) -> ModuleType:
    """src/<function>/app.py as Lambda imports it, fresh: its module-scope ledger and clients are this test's."""
    spec = importlib.util.spec_from_file_location(f"{function}_app_obs", ROOT / "src" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


# -- the template: dashboard and alarms -------------------------------------------------------------
def every_emitting_path(s3: Any, capsys: pytest.CaptureFixture[str]) -> list[Emitted]:
    found = run_copier(s3, {}) + run_copier(s3, {envvars.LAMBDA_FUNCTION_NAME: "f"})
    env = {envvars.STACK_NAME: STACK}
    emf.publish(m.planned({"planned": 1, "to_copy": 1, "skipped": 0}), env)
    causes = dict.fromkeys(m.CAUSES, 1)
    emf.publish(m.recorded({"copied": 1, "skipped": 0, "failed": len(causes), "failures_by_cause": causes}), env)
    emf.publish(m.finished({"state": "finished", "failed": 0}), env)
    return found + emitted(capsys.readouterr().out)


def dashboard_rows(body: dict[str, Any]) -> list[list[Any]]:
    return [row for w in body["widgets"] if w["type"] == "metric" for row in w["properties"]["metrics"]]


def our_metric(row: list[Any]) -> tuple[str, dict[str, str]]:
    """(name, dimensions) of a dashboard row of our namespace."""
    assert row[0] == m.NAMESPACE
    pairs = row[2:-1] if isinstance(row[-1], dict) else row[2:]
    return row[1], dict(zip(pairs[::2], pairs[1::2], strict=True))


def test_the_template_holds_the_dashboard_this_module_renders() -> None:
    body = source_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
    assert body == dashboard.render(), "run scripts/render_dashboard.py"


def test_the_dashboard_graphs_every_metric_and_only_metrics_the_code_emits(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.loads(dashboard.render().replace(dashboard.ALARM_ARNS, '"alarm"'))
    ours = [our_metric(r) for r in dashboard_rows(body) if r[0] == m.NAMESPACE]
    printed = {(e.name, tuple(sorted(e.dimensions))) for e in every_emitting_path(s3, capsys)}
    for name, dims in ours:
        assert dims[m.STACK_DIMENSION] == dashboard.STACK and dims[m.SERVICE_DIMENSION] == m.SERVICE
        assert (name, tuple(sorted(dims))) in printed, f"the dashboard graphs {name} {sorted(dims)}, nothing emits it"
    assert {name for name, _ in ours} == {metric.name for metric in m.METRICS}
    assert [d[m.CAUSE_DIMENSION] for n, d in ours if n == m.IMAGE_FAILURES.name] == list(m.CAUSES)
    # Every widget, the region of the stack; the state machine's own metrics, of this stack's machine.
    assert {w["properties"].get("region") for w in body["widgets"] if w["type"] == "metric"} == {"${AWS::Region}"}
    states = [r for r in dashboard_rows(body) if r[0] == "AWS/States"]
    assert states and all(r[2:4] == ["StateMachineArn", "${ReplicationStateMachine}"] for r in states)


def alarm_metrics(props: dict[str, Any]) -> list[dict[str, Any]]:
    if "Metrics" in props:
        return [q["MetricStat"]["Metric"] for q in props["Metrics"] if "MetricStat" in q]
    return [{k: props[k] for k in ("Namespace", "MetricName", "Dimensions")}]


def test_alarms_watch_metrics_the_code_emits(s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    printed = {(e.name, tuple(sorted(e.dimensions))) for e in every_emitting_path(s3, capsys)}
    resources = source_template()["Resources"]
    watched = []
    for name in ("FailedRunsAlarm", "StalenessAlarm"):
        props = resources[name]["Properties"]
        assert props["AlarmActions"] == [{"Ref": "NotificationTopic"}], name
        for metric in alarm_metrics(props):
            if metric["Namespace"] == m.NAMESPACE:
                dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
                assert dims == {m.STACK_DIMENSION: {"Ref": "AWS::StackName"}, m.SERVICE_DIMENSION: m.SERVICE}
                assert (metric["MetricName"], tuple(sorted(dims))) in printed, metric["MetricName"]
                watched.append(metric["MetricName"])
            else:
                assert metric["Namespace"] == "AWS/States"
                assert metric["Dimensions"] == [
                    {"Name": "StateMachineArn", "Value": {"Ref": "ReplicationStateMachine"}}
                ]
    assert watched == [m.RUNS_FAILED.name, m.RUNS_SUCCEEDED.name]


def _hours(rate: str) -> int:
    number, unit = re.fullmatch(r"rate\((\d+) (minutes?|hours?|days?)\)", rate).groups()  # type: ignore[union-attr]
    return int(number) * {"m": 1, "h": 60, "d": 1440}[unit[0]] // 60


def test_staleness_means_twice_the_schedule_without_a_successful_run() -> None:
    tpl = source_template()
    params, alarm = tpl["Parameters"], tpl["Resources"]["StalenessAlarm"]
    assert int(params["staleAfterHours"]["Default"]) == 2 * _hours(params["scheduleExpression"]["Default"])
    props = alarm["Properties"]
    assert alarm["Condition"] == "IsScheduled"  # ONE_TIME: nothing is expected to run again
    assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] == {"Ref": "staleAfterHours"}
    assert (props["Period"], props["Statistic"], props["ComparisonOperator"], props["Threshold"]) == (
        3600,
        "Sum",
        "LessThanThreshold",
        1,
    )
    # An hour without any datapoint is an hour without a success: that is the point of the alarm.
    assert props["TreatMissingData"] == "breaching"
    # CloudWatch evaluates at most 7 days for periods of an hour or more.
    assert max(params["staleAfterHours"]["AllowedValues"]) * props["Period"] <= 7 * 24 * 3600


@pytest.mark.parametrize("region", ["us-east-1", "cn-north-1", "cn-northwest-1"])
@pytest.mark.parametrize("schedule", ["rate(1 day)", "ONE_TIME"])
def test_dashboard_and_alarms_as_deployed_in_each_partition(region: str, schedule: str) -> None:
    deployment = Deployment(region)
    part, account = deployment.partition, deployment.account
    alarm_arn = f"arn:{part}:cloudwatch:{region}:{account}:alarm:{STACK}-"
    machine = f"arn:{part}:states:{region}:{account}:stateMachine:{STACK}-ECRReplicationSM"
    physical = {
        "FailedRunsAlarm": {"Arn": alarm_arn + "failed-runs"},
        "StalenessAlarm": {"Arn": alarm_arn + "no-successful-run"},
        "ReplicationStateMachine": {"Ref": machine},
        "NotificationTopic": {"Ref": f"arn:{part}:sns:{region}:{account}:{STACK}-NotificationTopic"},
        "LedgerTable": {"Ref": f"{STACK}-LedgerTable"},
        "Dashboard": {"Ref": f"{STACK}-{region}"},
    }
    params = {"sourceType": "Public", "srcList": "SELECTED", "srcImageList": "nginx", "scheduleExpression": schedule}
    resolver = Resolver(transformed(region), params, physical, deployment)
    deployed = resolver.deployed()

    body = json.loads(deployed["Dashboard"]["Properties"]["DashboardBody"])
    assert deployed["Dashboard"]["Properties"]["DashboardName"] == f"{STACK}-{region}"
    assert {w["properties"]["region"] for w in body["widgets"] if w["type"] == "metric"} == {region}
    rows = dashboard_rows(body)
    assert {our_metric(r)[1][m.STACK_DIMENSION] for r in rows if r[0] == m.NAMESPACE} == {STACK}
    assert {r[3] for r in rows if r[0] == "AWS/States"} == {machine}
    assert {r[3] for r in rows if r[0] == "AWS/Lambda"} == {
        f"{STACK}-ListImagesFunction",
        f"{STACK}-RecordOutcomeFunction",
    }
    (alarms,) = [w["properties"]["alarms"] for w in body["widgets"] if w["type"] == "alarm"]
    scheduled = schedule != "ONE_TIME"
    assert alarms == [alarm_arn + "failed-runs", *([alarm_arn + "no-successful-run"] if scheduled else [])]
    assert ("StalenessAlarm" in deployed) is scheduled
    topic = physical["NotificationTopic"]["Ref"]
    for name in ("FailedRunsAlarm", "StalenessAlarm") if scheduled else ("FailedRunsAlarm",):
        props = deployed[name]["Properties"]
        assert props["AlarmActions"] == [topic] and props["AlarmName"].startswith(f"{STACK}-")
        text = json.dumps(props)
        assert "${" not in text and "ref:" not in text, text
    if scheduled:
        assert deployed["StalenessAlarm"]["Properties"]["EvaluationPeriods"] == "48"
        assert deployed["StalenessAlarm"]["Properties"]["OKActions"] == [topic]
    # Nothing of another partition in what the dashboard and alarms name.
    other = "arn:aws:" if part == "aws-cn" else "arn:aws-cn:"
    assert other not in json.dumps(body) + json.dumps(deployed["FailedRunsAlarm"])
    console = "console.amazonaws.cn" if part == "aws-cn" else "console.aws.amazon.com"
    url = resolver.resolve(resolver.template["Outputs"]["DashboardUrl"]["Value"])
    assert url == f"https://{console}/cloudwatch/home?region={region}#dashboards:name={STACK}-{region}"


def test_every_function_and_the_copier_say_which_stack_they_measure() -> None:
    tpl = source_template()
    variables = tpl["Globals"]["Function"]["Environment"]["Variables"]
    assert variables[envvars.STACK_NAME] == {"Ref": "AWS::StackName"}
    assert (variables["POWERTOOLS_METRICS_NAMESPACE"], variables["POWERTOOLS_SERVICE_NAME"]) == (m.NAMESPACE, m.SERVICE)
    container = tpl["Resources"]["CopierTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert {"Name": envvars.STACK_NAME, "Value": {"Ref": "AWS::StackName"}} in container["Environment"]
    assert container["LogConfiguration"]["LogDriver"] == "awslogs"  # whose events CloudWatch extracts EMF from
    dockerfile = (ROOT / "copier" / "Dockerfile").read_text(encoding="utf-8")
    assert 'pip install --no-cache-dir --disable-pip-version-check ".[lambda]"' in dockerfile


def test_the_readme_lists_every_metric_and_counts_them_right() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Dashboard, alarms and metrics") :]
    section = section[: section.index("\n### ", 10)]
    for metric in m.METRICS:
        assert f"`{metric.name}`" in section, metric.name
    assert all(f"`{cause}`" in section for cause in m.CAUSES)
    plain = [metric for metric in m.METRICS if not metric.by_cause]
    assert (
        f"{len(plain)} metrics plus one `ImageFailures` per cause seen, at most {len(plain) + len(m.CAUSES)}" in section
    )
    body = json.loads(dashboard.render().replace(dashboard.ALARM_ARNS, '"alarm"'))
    assert f"this one graphs {len(dashboard_rows(body))}" in section
