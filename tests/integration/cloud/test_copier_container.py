"""The copier image `sam build` made, run as Fargate runs it, against real registries and moto.

The task's environment is the task definition's, for the stack parameters below, plus the state
machine's per-batch overrides (support.asl renders both from template.yaml and the ASL). What
only a test adds, and why: AWS_ENDPOINT_URL (moto instead of AWS), REGISTRY_ENDPOINTS and
INSECURE_REGISTRIES (the destination ECR host is an emulator on loopback, plain HTTP), and the
container credentials endpoint, which stands in for the task role exactly as Fargate provides it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from ecr_transfer.cloud import batch
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.model import Outcome, WorkItem
from support.asl import REGION
from support.faultproxy import FaultProxy, Rule

from ..ecr_support import ACCOUNT_A, EcrEmulator, MotoServer
from .conftest import BuiltApp, CredentialsEndpoint
from .copier_run import IMAGE_LIST_PARAMETER, Container, start_copier, task_environment

# The first test of a session builds the stand-in base images and the whole application (minutes, cold).
pytestmark = pytest.mark.timeout(1800)

pytest_plugins = ["integration.ecr_fixtures"]

BUCKET = "ecr-transfer-work"
SECRET_NAME = "ecr-transfer/src-login"
PULLER = "puller"
PASSWORD = "pw-8b1f6c0e-never-in-the-open"
IMAGES = {"team/a:1": "app-a", "team/b:1": "app-b", "tools/multi:v1": "multi", "slow/single:1": "single"}


@dataclass
class Scene:
    src: LocalRegistry
    proxy: FaultProxy
    dest: EcrEmulator
    digests: dict[str, str]
    items: list[WorkItem]
    environment: dict[str, str]
    s3: Any

    def outcomes(self) -> dict[str, Outcome]:
        key = batch.outcome_key(self.environment[batch.OUTCOME_PREFIX], self.items)
        body = self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return {o.source.split("/", 1)[1]: o for o in batch.parse_outcomes(body)}

    def landed(self, ref: str) -> str | None:
        repo, tag = ref.split(":")
        return self.dest.digest(f"mirror/{repo}", tag)


@pytest.fixture
def scene(
    aws: MotoServer,
    registry_factory: Any,
    seeded_src: Callable[..., dict[str, str]],
    task_credentials: CredentialsEndpoint,
) -> Iterator[Scene]:
    src = registry_factory(auth=(PULLER, PASSWORD))
    digests = seeded_src(IMAGES, registry=src)
    # Every source request goes through the proxy; the stop test stalls one image's blobs there.
    proxy = FaultProxy(src.host, rules=[]).start()
    dest = EcrEmulator(registry_factory(auth=("AWS", EcrEmulator.token_password(ACCOUNT_A))), ACCOUNT_A, REGION)
    refs = [f"{proxy.host}/{ref}" for ref in IMAGES]
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=IMAGE_LIST_PARAMETER, Type="String", Value="\n".join(refs)
    )
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=SECRET_NAME, SecretString=json.dumps({"username": PULLER, "password": PASSWORD})
    )
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    items = [
        WorkItem(
            source=f"{proxy.host}/{ref}",
            target=f"{dest.host}/mirror/{ref}",
            action="copy",
            reason="not at destination",
            source_digest=digests[ref],
        )
        for ref in IMAGES
    ]
    parameters = {"sourceType": "Public", "srcList": "SELECTED", "srcCredential": SECRET_NAME, "destPrefix": "mirror"}
    environment = task_environment(parameters, items, run_id="run-docker-1", bucket=BUCKET)
    environment.update(
        {
            "AWS_ENDPOINT_URL": aws.url,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": task_credentials.url,
            "REGISTRY_ENDPOINTS": json.dumps({dest.host: dest.endpoint}),
            "INSECURE_REGISTRIES": f"{proxy.host},{dest.address}",
            "ECR_TRANSFER_BACKOFF_BASE": "0.1",
        }
    )
    yield Scene(src, proxy, dest, digests, items, environment, s3)
    proxy.stop()
    dest.stop()


@pytest.fixture
def copier(built_app: BuiltApp) -> Iterator[Callable[[dict[str, str]], Container]]:
    started: list[Container] = []

    def start(environment: dict[str, str]) -> Container:
        container = start_copier(built_app.engine, built_app.copier_image, environment)
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove()


def test_the_copier_image_copies_a_batch_into_ecr_as_its_non_root_user_and_keeps_secrets_out(
    scene: Scene, copier: Callable[[dict[str, str]], Container]
) -> None:
    container = copier(scene.environment)

    assert container.wait() == 0, container.logs()

    outcomes = scene.outcomes()
    assert {ref: (o.status, o.target_digest) for ref, o in outcomes.items()} == {
        ref: ("copied", digest) for ref, digest in scene.digests.items()
    }
    assert {ref: scene.landed(ref) for ref in IMAGES} == scene.digests
    info = container.inspect()
    assert info["Config"]["User"] == "copier"
    changed = container.changed_paths()
    # skopeo's blob-info cache lands in the copier user's home, never in root's places.
    assert any(p.startswith("/home/copier/") for p in changed), changed
    assert not [p for p in changed if p.startswith(("/root", "/var/lib/containers"))], changed
    logs = container.logs()
    assert "batch done, 4 copied, 0 failed" in logs
    # The registry password came from Secrets Manager at run time: in no argument, variable or log.
    assert PASSWORD not in json.dumps(info)
    assert PASSWORD not in logs
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & {
        entry.split("=", 1)[0] for entry in info["Config"]["Env"]
    }


def test_a_copier_stopped_mid_batch_writes_every_outcome_and_a_rerun_finishes_the_batch(
    scene: Scene, copier: Callable[[dict[str, str]], Container]
) -> None:
    scene.proxy.rules.append(Rule(r"^GET /v2/slow/single/blobs/", "stall", times=100, stall_seconds=240))
    container = copier(scene.environment)
    fast = [ref for ref in IMAGES if not ref.startswith("slow/")]
    deadline = time.monotonic() + 120
    while any(scene.landed(ref) is None for ref in fast):
        assert time.monotonic() < deadline, container.logs()
        time.sleep(0.5)

    # ECS StopTask: SIGTERM, then SIGKILL after the stop timeout. The copier must not need it.
    took = container.stop(grace=90)

    # Exit code 1, not SIGKILL's 137: it stopped by itself, before the grace ran out.
    state = container.inspect()["State"]
    assert state["ExitCode"] == 1, container.logs()  # worth a retry: Step Functions runs it again
    assert took < 80, f"the copier needed {took:.1f}s to stop:\n{container.logs()}"
    outcomes = scene.outcomes()
    assert {ref: o.status for ref, o in outcomes.items()} == {
        **{ref: "copied" for ref in fast},
        "slow/single:1": "interrupted",
    }
    assert "stopped" in (outcomes["slow/single:1"].error or "")
    assert scene.landed("slow/single:1") is None
    assert "batch stopped, 1 image(s) not finished" in container.logs()

    scene.proxy.rules.clear()
    rerun = copier(scene.environment)

    assert rerun.wait() == 0, rerun.logs()
    assert {ref: o.status for ref, o in scene.outcomes().items()} == dict.fromkeys(IMAGES, "copied")
    assert {ref: scene.landed(ref) for ref in IMAGES} == scene.digests
