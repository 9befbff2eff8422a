"""The dashboard and alarms in template.yaml, against ecr_transfer.metrics and what the code prints.

Read from the template as written, and after SAM's transform resolved for a deployment in each
partition (tests/support/cfn.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer import envvars
from ecr_transfer import metrics as m
from ecr_transfer.cloud import dashboard
from support.cfn import Deployment, Resolver, source_template, transformed
from support.emf import STACK, every_emitting_path

ROOT = Path(__file__).resolve().parents[2]


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


def test_the_dashboard_graphs_every_metric_and_only_metrics_the_code_emits() -> None:
    body = json.loads(dashboard.render().replace(dashboard.ALARM_ARNS, '"alarm"'))
    ours = [our_metric(r) for r in dashboard_rows(body) if r[0] == m.NAMESPACE]
    printed = {(e.name, tuple(sorted(e.dimensions))) for e in every_emitting_path()}
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


def test_alarms_watch_metrics_the_code_emits() -> None:
    printed = {(e.name, tuple(sorted(e.dimensions))) for e in every_emitting_path()}
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
    functions = {r[3] for r in rows if r[0] == "AWS/Lambda"}
    names = ("ListImagesFunction", "RecordOutcomeFunction", "PushIntakeFunction")
    assert functions == {f"{STACK}-{name}" for name in names}
    named = {r["Properties"].get("FunctionName") for r in deployed.values() if r["Type"] == "AWS::Lambda::Function"}
    assert functions - {f"{STACK}-PushIntakeFunction"} <= named  # the push intake only exists with onPush
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


def test_the_dashboard_widgets_fit_its_24_columns_without_overlapping() -> None:
    cells: set[tuple[int, int]] = set()
    for widget in dashboard.widgets():
        assert widget["x"] + widget["width"] <= 24, widget["properties"]["title"]
        mine = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not mine & cells, widget["properties"]["title"]
        cells |= mine
    assert dashboard.widgets()[0]["type"] == "alarm"
