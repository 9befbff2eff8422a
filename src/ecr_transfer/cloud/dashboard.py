"""The stack's CloudWatch dashboard, built from ecr_transfer.metrics.

The body is rendered into template.yaml (DashboardBody, an Fn::Sub) by scripts/render_dashboard.py;
tests/unit/test_observability.py fails when the template's copy differs from what this module
builds, so a metric renamed here cannot leave a dashboard graphing nothing. The `${...}` strings
are CloudFormation's: the region, the stack name, the state machine and the alarms.
"""

from __future__ import annotations

import json
from typing import Any

from ecr_transfer import metrics as m

REGION = "${AWS::Region}"
STACK = "${AWS::StackName}"
STATE_MACHINE = "${ReplicationStateMachine}"
ALARM_ARNS = "${AlarmArns}"
"""A list of quoted ARNs (the staleness alarm exists only with a schedule): spliced in raw."""
_ALARMS_SENTINEL = "@alarm-arns@"
LAMBDA_FUNCTIONS = (
    "${AWS::StackName}-ListImagesFunction",
    "${AWS::StackName}-RecordOutcomeFunction",
    "${AWS::StackName}-PushIntakeFunction",
)
"""The push intake exists only with onPush: without it, its row stays empty."""
HOUR, FIVE_MINUTES = 3600, 300
WIDTH, HEIGHT = 12, 6


def ours(metric: m.Metric, stat: str, label: str, *, cause: str | None = None) -> list[Any]:
    """One of our metrics as a dashboard row: namespace, name, its dimensions, then options."""
    row: list[Any] = [m.NAMESPACE, metric.name, m.STACK_DIMENSION, STACK, m.SERVICE_DIMENSION, m.SERVICE]
    if metric.by_cause:
        assert cause is not None, metric.name
        row += [m.CAUSE_DIMENSION, cause]
    return [*row, {"stat": stat, "label": label}]


def _execution(name: str, label: str) -> list[Any]:
    return ["AWS/States", name, "StateMachineArn", STATE_MACHINE, {"stat": "Sum", "label": label}]


def _metric_widget(title: str, rows: list[list[Any]], *, period: int = HOUR, **extra: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"title": title, "region": REGION, "view": "timeSeries", "period": period, "metrics": rows}
    props.update(extra)
    return {"type": "metric", "width": WIDTH, "height": HEIGHT, "properties": props}


def _durations(metric: m.Metric) -> list[list[Any]]:
    return [ours(metric, stat, stat) for stat in ("p50", "p90", "Maximum")]


def widgets() -> list[dict[str, Any]]:
    seconds = {"yAxis": {"left": {"label": "seconds", "showUnits": False, "min": 0}}}
    found = [
        # The alarms' state first: what an operator opens the dashboard for.
        {
            "type": "alarm",
            "width": 2 * WIDTH,
            "height": 3,
            "properties": {"title": "Alarms", "alarms": [_ALARMS_SENTINEL]},
        },
        _metric_widget(
            "Runs",
            [
                ours(m.RUNS_STARTED, "Sum", "started"),
                ours(m.RUNS_FINISHED, "Sum", "finished"),
                ours(m.RUNS_SUCCEEDED, "Sum", "succeeded"),
                ours(m.RUNS_FAILED, "Sum", "failed (or with failed images)"),
                _execution("ExecutionsFailed", "executions failed"),
                _execution("ExecutionsTimedOut", "executions timed out"),
            ],
        ),
        _metric_widget(
            "Images by outcome",
            [
                ours(m.IMAGES_PLANNED, "Sum", "planned"),
                ours(m.IMAGES_TO_COPY, "Sum", "changed (to copy)"),
                ours(m.IMAGES_COPIED, "Sum", "copied"),
                ours(m.IMAGES_SKIPPED, "Sum", "unchanged (skipped)"),
                ours(m.IMAGES_FAILED, "Sum", "failed"),
            ],
        ),
        _metric_widget("Bytes copied", [ours(m.BYTES_COPIED, "Sum", "bytes")]),
        _metric_widget(
            "Failed images by cause",
            [ours(m.IMAGE_FAILURES, "Sum", cause, cause=cause) for cause in m.CAUSES],
            stacked=True,
        ),
        _metric_widget("Copy duration per image", _durations(m.COPY_DURATION), period=FIVE_MINUTES, **seconds),
        _metric_widget("Push to landed latency", _durations(m.PUSH_TO_LANDED), period=FIVE_MINUTES, **seconds),
        _metric_widget(
            "On push",
            [ours(m.IMAGES_PUSHED, "Sum", "pushes received"), ours(m.PUSH_RUNS_STARTED, "Sum", "runs started")],
            period=FIVE_MINUTES,
        ),
        _metric_widget(
            "Copy tasks started",
            [ours(m.FARGATE_TASKS_STARTED, "Sum", "Fargate tasks"), ours(m.LAMBDA_BATCHES_STARTED, "Sum", "Lambda")],
        ),
        _metric_widget(
            "Lambda errors",
            [["AWS/Lambda", "Errors", "FunctionName", name, {"stat": "Sum"}] for name in LAMBDA_FUNCTIONS],
        ),
    ]
    # Left to right, a new row when a widget would not fit the dashboard's 24 columns.
    x = y = row_height = 0
    for widget in found:
        if x + widget["width"] > 2 * WIDTH:
            x, y, row_height = 0, y + row_height, 0
        widget["x"], widget["y"] = x, y
        x, row_height = x + widget["width"], max(row_height, widget["height"])
    return found


def body() -> dict[str, Any]:
    return {"start": "-P7D", "periodOverride": "inherit", "widgets": widgets()}


def render() -> str:
    """The body as template.yaml holds it: one widget, and one metric row, per line."""
    lines = ["{", '  "start": "-P7D",', '  "periodOverride": "inherit",', '  "widgets": [']
    rendered = widgets()
    for n, widget in enumerate(rendered):
        props = dict(widget["properties"])
        rows = props.pop("metrics", None)
        head = {k: v for k, v in widget.items() if k != "properties"}
        text = json.dumps({**head, "properties": props}, separators=(", ", ": "))
        if rows is not None:
            inner = ",\n".join("      " + json.dumps(row, separators=(", ", ": ")) for row in rows)
            text = text[:-2] + ', "metrics": [\n' + inner + "\n    ]}}"
        lines.append("    " + text + ("," if n < len(rendered) - 1 else ""))
    lines += ["  ]", "}"]
    return "\n".join(lines).replace(f'"{_ALARMS_SENTINEL}"', ALARM_ARNS) + "\n"
