"""The fast path for real: `sam local invoke CopierImageFunction` with events/fast_copy_batch.json.

The copier image `sam build` made runs under SAM's Lambda runtime interface emulator, started as
the template's ImageConfig says (awslambdaric and copier/lambda_handler.py), with the function's
environment from the template. It copies from one ECR emulator to another through their front
doors on the Docker bridge's gateway (real docker-registry instances behind them, real skopeo in
the container) and writes the batch's outcomes to S3 in moto, as the recorder reads them.

What only the test adds: AWS_ENDPOINT_URL (moto), REGISTRY_ENDPOINTS and INSECURE_REGISTRIES (the
ECR hosts are emulators on plain HTTP), see sam_local.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecr_transfer.cloud import batch, fast_copy
from ecr_transfer.local.oci import SampleImages
from support.cfn import Deployment, Resolver, source_template
from support.docker_engine import docker
from support.sam import sam_cli

from ..ecr_support import OPENER, EcrEmulator, MotoServer, free_port
from .conftest import BuiltApp
from .sam_local import BUCKET, PARAMETERS, SamLocal, event

# The first test of a session builds the stand-in base images and the whole application (minutes, cold).
pytestmark = pytest.mark.timeout(1800)

log = logging.getLogger(__name__)
FUNCTION = "CopierImageFunction"
IMAGE_LIST = "/DTHECRStack/srcImageList"


def fast_batch(src: EcrEmulator, dst: EcrEmulator, tags: dict[str, str]) -> dict[str, Any]:
    """events/fast_copy_batch.json for these source tags (tag -> digest), hosts and bucket filled in."""
    payload = event("fast_copy_batch.json")
    (sample,) = payload["items"]
    payload["bucket"] = BUCKET
    payload["items"] = [
        {**sample, "source": f"{src.host}/team/app:{tag}", "target": f"{dst.host}/team/app:{tag}", "source_digest": d}
        for tag, d in tags.items()
    ]
    return payload


def seconds(start: str | None, end: str | None) -> float:
    assert start and end
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def sam_for(built_app: BuiltApp, template: Path, tmp_path: Path, *emulators: EcrEmulator) -> SamLocal:
    endpoints = {e.host: e.endpoint for e in emulators}
    where = {"REGISTRY_ENDPOINTS": json.dumps(endpoints), "INSECURE_REGISTRIES": ",".join(e.address for e in emulators)}
    return SamLocal(built_app, template, tmp_path, {FUNCTION: where})


def test_sam_local_invoke_of_the_copier_function_copies_a_push_batch_and_writes_its_outcomes(
    built_app: BuiltApp,
    local_template: Path,
    bridged_cloud: tuple[EcrEmulator, EcrEmulator],
    oci_images: SampleImages,
    tmp_path: Path,
) -> None:
    src, dst = bridged_cloud
    digests = {
        "2.0": src.publish(oci_images.layout, "app-a", "team/app", "2.0"),
        "multi": src.publish(oci_images.layout, "multi", "team/app", "multi"),
    }
    payload = fast_batch(src, dst, digests)
    sam = sam_for(built_app, local_template, tmp_path, src, dst)

    answer = sam.invoke(FUNCTION, payload)

    assert {k: answer[k] for k in ("run_id", "finished", "copied", "failed", "unfinished")} == {
        "run_id": "sam-local-push-run", "finished": True, "copied": 2, "failed": 0, "unfinished": 0,
    }, sam.logs[-4000:]  # fmt: skip
    assert f":function:{FUNCTION} request " in answer["task_arn"]  # what the recorder names on a failure
    # The images are at the destination, byte for byte (the index digest kept), and ECR knows them.
    assert {tag: dst.digest("team/app", tag) for tag in digests} == digests
    # The outcomes where the recorder reads them, for exactly this batch.
    key = batch.outcome_key(payload["outcome_prefix"], batch.parse_items(payload["items"]))
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
    outcomes = {o.source.rsplit(":", 1)[1]: o for o in batch.parse_outcomes(body)}
    assert {tag: (o.status, o.target_digest) for tag, o in outcomes.items()} == {
        tag: ("copied", d) for tag, d in digests.items()
    }
    # The copier's metrics, as the fast path's (EMF lines in the function's log).
    metrics = [json.loads(m) for m in re.findall(r'^(\{"_aws".*\})\s*$', sam.logs, re.MULTILINE)]
    assert [m["LambdaBatchesStarted"] for m in metrics if "LambdaBatchesStarted" in m] == [[1.0]]
    assert not [m for m in metrics if "FargateTasksStarted" in m]
    (copied,) = [m for m in metrics if "BytesCopied" in m]
    assert len(copied["CopyDuration"]) == 2 and len(copied["PushToLandedLatency"]) == 2
    # What the README's latency model uses: the copy itself, without the container's start.
    durations = sorted(seconds(o.started_at, o.ended_at) for o in outcomes.values())
    log.warning("fast path: handler %.2fs, copies %s s, invoke %.1fs", answer["seconds"], durations, sam.seconds)
    print(f"FAST-PATH-MEASURE handler={answer['seconds']:.3f}s copies={durations} invoke={sam.seconds:.1f}s")


def test_a_batch_over_the_fast_paths_bound_is_handed_back_uncopied(
    built_app: BuiltApp,
    local_template: Path,
    bridged_cloud: tuple[EcrEmulator, EcrEmulator],
    oci_images: SampleImages,
    tmp_path: Path,
) -> None:
    src, dst = bridged_cloud
    digest = src.publish(oci_images.layout, "app-a", "team/app", "2.0")
    tags = {f"2.0-{n}": digest for n in range(fast_copy.MAX_IMAGES + 1)}
    payload = fast_batch(src, dst, tags)
    sam = sam_for(built_app, local_template, tmp_path, src, dst)

    answer = sam.invoke(FUNCTION, payload)

    assert {k: answer[k] for k in ("finished", "copied", "unfinished", "reason")} == {
        "finished": False, "copied": 0, "unfinished": fast_copy.MAX_IMAGES + 1,
        "reason": f"{fast_copy.MAX_IMAGES + 1} images, more than the fast path's {fast_copy.MAX_IMAGES}",
    }  # fmt: skip
    # Nothing copied, no outcome written: the state machine sends the batch to Fargate.
    assert all(dst.digest("team/app", tag) is None for tag in tags)
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=payload["outcome_prefix"])
    assert listed.get("KeyCount", 0) == 0
    assert "handed back to Fargate" in sam.logs


def lambda_environment(moto_url: str, *emulators: EcrEmulator) -> dict[str, str]:
    """The function's environment as CloudFormation resolves it in us-east-1, what Lambda adds
    (its region, the role's credentials as variables), and where the test's registries are."""
    resolver = Resolver(source_template(), PARAMETERS, {"ImageListParameter": {"Ref": IMAGE_LIST}},
                        Deployment("us-east-1"))  # fmt: skip
    variables = {**resolver.template["Globals"]["Function"]["Environment"]["Variables"]}
    variables.update(resolver.resource(FUNCTION)["Properties"]["Environment"]["Variables"])
    env = {k: str(v) for k, v in resolver.resolve(variables).items()}
    env.update(
        # The function's Timeout (the emulator's default is 300 s, which the handler would refuse).
        AWS_LAMBDA_FUNCTION_TIMEOUT=str(resolver.resource(FUNCTION)["Properties"]["Timeout"]),
        AWS_REGION="us-east-1", AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing", AWS_ENDPOINT_URL=moto_url,
        REGISTRY_ENDPOINTS=json.dumps({e.host: e.endpoint for e in emulators}),
        INSECURE_REGISTRIES=",".join(e.address for e in emulators),
    )  # fmt: skip
    return env


def test_the_copier_function_runs_as_lambda_runs_it_a_foreign_user_and_a_read_only_root(
    built_app: BuiltApp,
    bridge_moto: MotoServer,
    cloud: tuple[EcrEmulator, EcrEmulator],
    oci_images: SampleImages,
    tmp_path: Path,
) -> None:
    """What SAM's emulation leaves out: Lambda runs the image as a user of its choosing (not the
    image's), with a read-only root and a writable /tmp. Here the same runtime interface emulator
    SAM ships runs the image that way, on the host network, so the registries stay on loopback."""
    src, dst = cloud
    digest = src.publish(oci_images.layout, "multi", "team/app", "2.0")
    payload = fast_batch(src, dst, {"2.0": digest})
    rie = next(Path(sam_cli_package()).glob("local/rapid/aws-lambda-rie-x86_64"))
    api, rapid = free_port(), free_port()
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in lambda_environment(bridge_moto.url, src, dst).items()))
    name = f"ecr-transfer-lambda-{tmp_path.name[-8:]}"
    docker(built_app.engine, "run", "-d", "--name", name, "--network", "host", "--user", "54321:54321",
           "--read-only", "--tmpfs", "/tmp:rw,size=512m", "--env-file", str(env_file),
           "-v", f"{rie}:/usr/local/bin/aws-lambda-rie:ro", "--entrypoint", "/usr/local/bin/aws-lambda-rie",
           built_app.copier_image, "--runtime-interface-emulator-address", f"127.0.0.1:{rapid}",
           "--runtime-api-address", f"127.0.0.1:{api}",
           "python", "-m", "awslambdaric", "lambda_handler.lambda_handler")  # fmt: skip
    try:
        answer = invoke_rie(rapid, payload)
        logs = docker(built_app.engine, "logs", name)
        assert answer.get("finished") is True, (answer, logs.stdout[-3000:] + logs.stderr[-3000:])
        assert dst.digest("team/app", "2.0") == digest
        assert docker(built_app.engine, "inspect", name, "--format", "{{.Config.User}}").stdout.strip() == "54321:54321"
        # Nothing written outside /tmp (the read-only root would have refused it): the only change
        # is the emulator's mount point, which Lambda itself does not have.
        changed = docker(built_app.engine, "diff", name).stdout.splitlines()
        assert sorted(changed) == ["A /usr/local/bin/aws-lambda-rie", "C /usr", "C /usr/local", "C /usr/local/bin"]
    finally:
        docker(built_app.engine, "rm", "-f", name, check=False)


def sam_cli_package() -> str:
    """samcli's package directory in the SAM CLI's venv (it ships the runtime interface emulator)."""
    sam = sam_cli()
    assert sam is not None
    first = Path(sam).read_text(errors="replace").split("\n", 1)[0]
    python = first[2:].strip()
    out = subprocess.run([python, "-c", "import samcli, os; print(os.path.dirname(samcli.__file__))"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def invoke_rie(port: int, payload: dict[str, Any], timeout: float = 600) -> dict[str, Any]:
    """POST the event to the emulator's invoke endpoint, once it listens."""
    url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
            with OPENER.open(request, timeout=timeout) as response:
                return dict(json.loads(response.read()))
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
