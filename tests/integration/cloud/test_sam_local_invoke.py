"""`sam local invoke` of the lister, the recorder and the push intake, with the files in events/,
as the README tells users to; the functions run in SAM's Lambda emulation (its runtime interface
emulator in a container) on the stand-in Lambda base image, against moto and images published
through the ECR emulator into real registries (see sam_local for the bridge and the template copy).
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from ecr_transfer.cloud import batch
from ecr_transfer.ledger.url import open_ledger
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.model import Outcome

from ..ecr_support import EcrEmulator
from ..handler_support import stub_state_machine
from .conftest import BuiltApp
from .sam_local import BUCKET, STATE_MACHINE_ARN, TABLE, SamLocal, event

# The first test of a session builds the stand-in base images and the whole application (minutes, cold).
pytestmark = pytest.mark.timeout(1800)

pytest_plugins = ["integration.ecr_fixtures"]


def test_sam_local_invoke_plans_with_the_lister_then_the_recorder_records_the_batch_and_finishes_the_run(
    built_app: BuiltApp,
    local_template: Path,
    cloud: tuple[EcrEmulator, EcrEmulator],
    oci_images: SampleImages,
    tmp_path: Path,
) -> None:
    src, dst = cloud
    unchanged = src.publish(oci_images.layout, "app-b", "team/app", "1.0")
    assert dst.publish(oci_images.layout, "app-b", "team/app", "1.0") == unchanged
    new = src.publish(oci_images.layout, "app-a", "team/app", "2.0")
    sam = SamLocal(built_app, local_template, tmp_path)

    planned = sam.invoke("ListerFunction", event("list_images.json"))

    run_id = event("list_images.json")["run_id"]
    assert {k: planned[k] for k in ("run_id", "bucket", "planned", "to_copy", "skipped")} == {
        "run_id": run_id, "bucket": BUCKET, "planned": 2, "to_copy": 1, "skipped": 1,
    }  # fmt: skip
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=planned["work_list_key"])["Body"].read()
    [item] = batch.parse_items(json.loads(body))
    recorded_event = event("record_batch.json")
    [sample] = batch.parse_items(recorded_event["items"])
    # events/record_batch.json describes what the lister really plans for this source.
    assert (item.source, item.target, item.source_digest) == (sample.source, sample.target, new)
    ledger = open_ledger(f"dynamodb://{TABLE}")
    assert {(o.source, o.status, o.target_digest) for o in ledger.latest()} == {
        (f"{src.host}/team/app:1.0", "skipped", unchanged)
    }

    # What the copier task writes for the batch, then the recorder's two actions.
    copied = Outcome(run_id=run_id, source=item.source, target=item.target, status="copied",
                     source_digest=new, target_digest=new, attempts=1)  # fmt: skip
    boto3.client("s3").put_object(
        Bucket=BUCKET,
        Key=batch.outcome_key(recorded_event["outcome_prefix"], [sample]),
        Body=batch.outcomes_body([copied]),
    )
    counts = sam.invoke("RecorderFunction", {**recorded_event, "bucket": BUCKET})
    finished = sam.invoke("RecorderFunction", event("finish_run.json"))

    assert counts == {"recorded": 1, "copied": 1, "failed": 0, "skipped": 0, "failures_by_cause": {}}
    assert {(o.source, o.status) for o in ledger.latest()} == {
        (f"{src.host}/team/app:1.0", "skipped"), (f"{src.host}/team/app:2.0", "copied"),
    }  # fmt: skip
    assert {k: finished[k] for k in ("run_id", "state", "planned", "copied", "skipped", "failed")} == {
        "run_id": run_id, "state": "finished", "planned": 2, "copied": 1, "skipped": 1, "failed": 0,
    }  # fmt: skip


def test_sam_local_invoke_of_the_push_intake_starts_one_run_for_a_burst_of_pushes(
    built_app: BuiltApp, local_template: Path, cloud: tuple[EcrEmulator, EcrEmulator], tmp_path: Path
) -> None:
    sfn = boto3.client("stepfunctions")
    arn = stub_state_machine(sfn)
    assert arn == STATE_MACHINE_ARN
    sam = SamLocal(built_app, local_template, tmp_path)

    result = sam.invoke("PushIntakeFunction", event("push_same_account.json"))

    assert result["pushed"] == 2 and result["ignored"] == 0
    (execution,) = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert [execution["name"]] == result["executions"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert [(p["repository"], p["tag"]) for p in started["pushed"]] == [("team/app", "2.0"), ("team/app", "latest")]
