"""Reading CloudWatch embedded metric format (EMF) as CloudWatch does, and a copier batch that emits it.

Shared by tests/unit/test_metrics_emitted.py (what the code prints) and
tests/unit/test_dashboard_alarms.py (the template graphing and alarming on exactly that).
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from moto import mock_aws

from ecr_transfer import envvars
from ecr_transfer import metrics as m
from ecr_transfer.cloud import batch, copier_task, emf
from ecr_transfer.model import Outcome, WorkItem
from support.fakes import FakeContext

BUCKET = "work"
STACK = "DTHECRStack"
SRC = "123456789012.dkr.ecr.us-west-2.amazonaws.com"
DST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
STARTED, ENDED = "2026-12-01T10:00:00.000+00:00", "2026-12-01T10:00:02.500+00:00"
DIMENSIONS = {m.STACK_DIMENSION: STACK, m.SERVICE_DIMENSION: m.SERVICE}


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


def run_copier(extra_env: dict[str, str]) -> list[Emitted]:
    """A batch of three (one pushed, one plain, one tag conflict) through copier_task.run_batch, S3 in moto."""
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
    capture = Stdout()
    with mock_aws(), capture:
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        code = copier_task.run_batch(
            env,
            s3=s3,
            build=lambda s, e: FakeContext(clients=registry),
            image_list_loader=None,
            copier_factory=TimedCopier,
        )
    assert code == 0
    return emitted(capture.text)


class Stdout:
    """Powertools prints with print(): capture sys.stdout around one call."""

    def __enter__(self) -> None:
        self._old, sys.stdout = sys.stdout, io.StringIO()

    def __exit__(self, *exc: object) -> None:
        self.text = sys.stdout.getvalue()
        sys.stdout = self._old


def every_emitting_path() -> list[Emitted]:
    """What the copier (on Fargate and in Lambda), the lister and the recorder print, every cause included."""
    found = run_copier({}) + run_copier({envvars.LAMBDA_FUNCTION_NAME: "f"})
    env = {envvars.STACK_NAME: STACK}
    causes = dict.fromkeys(m.CAUSES, 1)
    capture = Stdout()
    with capture:
        emf.publish(m.received({"pushed": 3, "executions": ["arn:execution"]}), env)
        emf.publish(m.planned({"planned": 1, "to_copy": 1, "skipped": 0}), env)
        emf.publish(m.recorded({"copied": 1, "skipped": 0, "failed": len(causes), "failures_by_cause": causes}), env)
        emf.publish(m.finished({"state": "finished", "failed": 0}), env)
    return found + emitted(capture.text)
