"""`sam local invoke` of the lister and the recorder, with the files in events/, as the README
tells users to; the functions run in SAM's Lambda emulation (its runtime interface emulator in a
container) on the stand-in Lambda base image, against moto and images published through the ECR
emulator into real registries.

SAM runs Lambda containers on Docker's default bridge (with `--docker-network host` it cannot
reach the emulator it started), so moto listens on the bridge's gateway address: the host's own
side of a bridge only this engine's containers are on. `sam local invoke --env-vars` only sets
variables the template declares, so AWS_ENDPOINT_URL is added to a copy of the built template;
without it boto3 in the container would go for the real AWS endpoints.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from ecr_transfer.cloud import batch
from ecr_transfer.ledger.url import open_ledger
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.model import Outcome
from support import standins
from support.asl import Stack
from support.docker_engine import bridge_gateway
from support.sam import ROOT, python312_env, sam_cli

from ..ecr_support import ACCOUNT_A, EcrEmulator, MotoServer, moto_server_on, use_moto
from ..handler_support import STATE_MACHINE, stub_state_machine
from .conftest import BuiltApp

# The first test of a session builds the stand-in base images and the whole application (minutes, cold).
pytestmark = pytest.mark.timeout(1800)

pytest_plugins = ["integration.ecr_fixtures"]

EVENTS = ROOT / "events"
BUCKET = "dthecrstack-work"
TABLE = "DTHECRStack-ledger"
PARAMETERS = {"sourceType": "Amazon_ECR", "srcList": "ALL", "srcRegion": "us-west-2", "onPush": "true"}
STATE_MACHINE_ARN = f"arn:aws:states:us-east-1:{ACCOUNT_A}:stateMachine:{STATE_MACHINE}"


@pytest.fixture(scope="session")
def bridge_moto(built_app: BuiltApp) -> Iterator[MotoServer]:
    with moto_server_on(bridge_gateway()) as server:
        yield server


@pytest.fixture(scope="session")
def local_template(built_app: BuiltApp, bridge_moto: MotoServer) -> Path:
    standins.ensure_lambda_base(built_app.engine)
    template = yaml.safe_load(built_app.template.read_text())
    for name in ("ListerFunction", "RecorderFunction", "PushIntakeFunction"):
        template["Resources"][name]["Properties"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] = bridge_moto.url
    # The lister asks the ECR source's registry for referrers (OCI 1.1 referrers API). The emulators'
    # registries listen on the host's loopback, out of the container's reach; the real ECR host must
    # never be contacted: a closed port of the container's own loopback stands in (refused, so the run
    # plans with the tag-named referrers only, after one warning).
    source_host = f"{ACCOUNT_A}.dkr.ecr.{PARAMETERS['srcRegion']}.amazonaws.com"
    lister_env = template["Resources"]["ListerFunction"]["Properties"]["Environment"]["Variables"]
    lister_env["REGISTRY_ENDPOINTS"] = json.dumps({source_host: "127.0.0.1:9"})
    path = built_app.build_dir / "template-moto.yaml"  # beside the built one: CodeUri paths are relative
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def env_vars(tmp_path: Path) -> Path:
    """events/env.json with its placeholders filled in, as the README tells users to do."""
    names = {"WorkBucketName": BUCKET, "LedgerTableName": TABLE, "StateMachineArn": STATE_MACHINE_ARN}
    values = event("env.json")
    for variables in values.values():
        for key in variables:
            for output, real in names.items():
                variables[key] = variables[key].replace(f"REPLACE-with-the-{output}-output", real)
    assert "REPLACE" not in json.dumps(values)
    path = tmp_path / "env.json"
    path.write_text(json.dumps(values))
    return path


class SamLocal:
    def __init__(self, app: BuiltApp, template: Path, tmp_path: Path) -> None:
        self.app, self.template, self.tmp_path = app, template, tmp_path
        self.env_vars = env_vars(tmp_path)

    def invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        event_file = self.tmp_path / f"{function}-event.json"
        event_file.write_text(json.dumps(payload))
        overrides = " ".join(f"{k}={v}" for k, v in PARAMETERS.items())
        env = python312_env(self.app.engine.env())
        assert env is not None
        # The Lambda gets these as its execution role's credentials (moto accepts any).
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        env.pop("AWS_ENDPOINT_URL", None)  # SAM itself talks to nothing; only the function does
        sam = sam_cli()
        assert sam is not None
        result = subprocess.run(
            [sam, "local", "invoke", function, "-t", str(self.template), "-e", str(event_file),
             "--env-vars", str(self.env_vars), "--parameter-overrides", overrides,
             "--skip-pull-image", "--region", "us-east-1"],
            cwd=self.app.build_dir, env=env, capture_output=True, text=True, timeout=1500, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        assert "errorMessage" not in answer, answer
        return dict(answer)


@pytest.fixture
def cloud(
    bridge_moto: MotoServer, monkeypatch: pytest.MonkeyPatch, registry_factory: Any, oci_images: SampleImages
) -> Iterator[tuple[EcrEmulator, EcrEmulator]]:
    use_moto(bridge_moto, monkeypatch)
    ledger_props = Stack(PARAMETERS, {}).resource("LedgerTable")["Properties"]
    table_keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        # The table's keys and indexes as the template declares them.
        **{k: v for k, v in ledger_props.items() if k in table_keys},
    )
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    boto3.client("ssm").put_parameter(Name="/DTHECRStack/srcImageList", Type="String", Value="unused with srcList ALL")
    password = EcrEmulator.token_password(ACCOUNT_A)
    src = EcrEmulator(registry_factory(auth=("AWS", password)), ACCOUNT_A, "us-west-2")
    dst = EcrEmulator(registry_factory(auth=("AWS", password)), ACCOUNT_A, "us-east-1")
    yield src, dst
    src.stop()
    dst.stop()


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
