"""Datapoints (ecr_transfer.metrics) as CloudWatch embedded metric format, through Powertools Metrics.

One EMF document per line on stdout. In Lambda, CloudWatch Logs extracts the metrics from the
function's log stream. On Fargate the awslogs driver sends each stdout line as one log event with
PutLogEvents, and CloudWatch Logs extracts EMF from such events without the
`x-amzn-logs-format: json/emf` header ("you have the option to include [it] ... but it's not
required", CloudWatch's PutLogEvents EMF page, the same in the China regions' documentation). So
the copier needs no CloudWatch agent, no cloudwatch:PutMetricData grant and no extra API call.
Each document stays far below Docker's 16 KiB line limit (a longer line is split into two events,
neither of them JSON).

Emitting must never fail the work it measures: errors are logged and dropped.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from ecr_transfer import envvars
from ecr_transfer.metrics import CAUSE_DIMENSION, NAMESPACE, SERVICE, SERVICE_DIMENSION, STACK_DIMENSION, Datapoint

log = logging.getLogger(__name__)
LOCAL_STACK = "local"
"""The Stack dimension outside a deployed stack (tests, a hand-run container)."""


def stack_name(environ: Mapping[str, str]) -> str:
    return environ.get(envvars.STACK_NAME) or LOCAL_STACK


def new_metrics(environ: Mapping[str, str]) -> Metrics:
    """Namespace, service and Stack from ecr_transfer.metrics, whatever the POWERTOOLS_* variables say."""
    metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
    # Powertools keeps dimensions in state every instance shares: setting the Stack again (the
    # next batch, the next handler module) overwrites it, which is what we want, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics.set_default_dimensions(**{STACK_DIMENSION: stack_name(environ)})
    return metrics


def add(metrics: Metrics, points: Iterable[Datapoint], *, run_id: str | None = None) -> None:
    """Queue `points` on `metrics` (flushed by Powertools' log_metrics, or by publish()).

    A datapoint with a cause goes out at once in a document of its own: its dimension set
    differs from the others'.
    """
    try:
        if run_id:
            metrics.add_metadata(key="run_id", value=run_id)
        for point in points:
            unit = MetricUnit(point.metric.unit)
            if point.cause is None:
                metrics.add_metric(name=point.metric.name, unit=unit, value=point.value)
                continue
            dimensions = {**metrics.default_dimensions, SERVICE_DIMENSION: SERVICE}
            with single_metric(
                name=point.metric.name,
                unit=unit,
                value=point.value,
                namespace=NAMESPACE,
                default_dimensions=dimensions,
            ) as one:
                one.add_dimension(name=CAUSE_DIMENSION, value=point.cause)
                if run_id:
                    one.add_metadata(key="run_id", value=run_id)
    except Exception:
        log.warning("metrics not emitted", exc_info=True)


def publish(points: Iterable[Datapoint], environ: Mapping[str, str], *, run_id: str | None = None) -> None:
    """Emit `points` now: the copier's way (no Lambda handler decorator flushes for it)."""
    points = list(points)
    if not points:
        return
    metrics = new_metrics(environ)
    add(metrics, points, run_id=run_id)
    try:
        metrics.flush_metrics()
    except Exception:
        log.warning("metrics not emitted", exc_info=True)
