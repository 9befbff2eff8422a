"""The deployed application, run for real: `sam build` of everything, then its artefacts in Docker.

Needs a Docker engine (started here, privately: support.docker_engine), debootstrap and a Python
3.12 for the stand-in base images (support.standins), and the SAM CLI. Where one is missing the
tests are skipped with that reason; CI installs all of them, so there they run.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from support import docker_engine, standins
from support.asl import Stack
from support.docker_engine import Engine, bridge_gateway
from support.sam import ROOT, python312_env, sam_cli

from ..ecr_support import ACCOUNT_A, EcrEmulator, MotoServer, moto_server_on, use_moto

COPIER_IMAGE = "copierimagefunction:copier-v1"
"""What `sam build` tags the copier image as (the function's logical id and its Metadata DockerTag)."""


@dataclass(frozen=True)
class BuiltApp:
    engine: Engine
    build_dir: Path
    template: Path
    copier_image: str


@pytest.fixture(scope="session")
def engine() -> Engine:
    reason = docker_engine.unavailable_reason() or standins.unavailable_reason()
    if reason:
        pytest.skip(reason)
    return docker_engine.ensure()


@pytest.fixture(scope="session")
def built_app(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> BuiltApp:
    """`sam build` of the whole application, copier image included, as a user runs it."""
    sam = sam_cli()
    env = python312_env(engine.env())
    if sam is None or env is None:
        pytest.skip("needs the SAM CLI (.venv-sam, ./scripts/bootstrap.sh) and python3.12 on PATH")
    standins.ensure_python_base(engine)
    build_dir = tmp_path_factory.mktemp("sam-build")
    result = subprocess.run(
        [sam, "build", "--build-dir", str(build_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return BuiltApp(engine, build_dir, build_dir / "template.yaml", COPIER_IMAGE)


class CredentialsEndpoint:
    """The ECS container credentials endpoint, as Fargate gives a task its role: the container's
    environment then holds a URL, never a key (AWS_CONTAINER_CREDENTIALS_FULL_URI, loopback)."""

    def __init__(self) -> None:
        keys = {"AccessKeyId": "testing", "SecretAccessKey": "testing", "Token": "testing"}
        body = json.dumps({**keys, "Expiration": "2099-01-01T00:00:00Z"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/credentials/task"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def task_credentials() -> Iterator[CredentialsEndpoint]:
    endpoint = CredentialsEndpoint()
    yield endpoint
    endpoint.stop()


# -- `sam local invoke` (tests/integration/cloud/sam_local.py) -------------------------------------
@pytest.fixture(scope="session")
def bridge_moto(built_app: BuiltApp) -> Iterator[MotoServer]:
    with moto_server_on(bridge_gateway()) as server:
        yield server


@pytest.fixture(scope="session")
def local_template(built_app: BuiltApp, bridge_moto: MotoServer) -> Path:
    from .sam_local import PARAMETERS

    standins.ensure_lambda_base(built_app.engine)
    template = yaml.safe_load(built_app.template.read_text())
    for name in ("ListerFunction", "RecorderFunction", "PushIntakeFunction", "CopierImageFunction"):
        template["Resources"][name]["Properties"]["Environment"]["Variables"]["AWS_ENDPOINT_URL"] = bridge_moto.url
    # The lister asks the ECR source's registry for referrers (OCI 1.1 referrers API). The emulators'
    # registries listen on the host's loopback, out of the container's reach; the real ECR host must
    # never be contacted: a closed port of the container's own loopback stands in (refused, so the run
    # plans with the tag-named referrers only, after one warning).
    source_host = f"{ACCOUNT_A}.dkr.ecr.{PARAMETERS['srcRegion']}.amazonaws.com"
    lister_env = template["Resources"]["ListerFunction"]["Properties"]["Environment"]["Variables"]
    lister_env["REGISTRY_ENDPOINTS"] = json.dumps({source_host: "127.0.0.1:9"})
    # Where a test's ECR emulators really are (on the bridge's gateway): declared here, set per test
    # through --env-vars (the ports change from test to test).
    copier_env = template["Resources"]["CopierImageFunction"]["Properties"]["Environment"]["Variables"]
    copier_env.update(REGISTRY_ENDPOINTS="{}", INSECURE_REGISTRIES="")
    path = built_app.build_dir / "template-moto.yaml"  # beside the built one: CodeUri paths are relative
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


def _cloud(listen: str, registry_factory: Any) -> tuple[EcrEmulator, EcrEmulator]:
    """The stack's table, bucket and list parameter in moto; the source and destination ECR."""
    from .sam_local import BUCKET, PARAMETERS, TABLE

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
    src = EcrEmulator(registry_factory(auth=("AWS", password)), ACCOUNT_A, "us-west-2", listen=listen)
    dst = EcrEmulator(registry_factory(auth=("AWS", password)), ACCOUNT_A, "us-east-1", listen=listen)
    return src, dst


@pytest.fixture
def cloud(
    bridge_moto: MotoServer, monkeypatch: pytest.MonkeyPatch, registry_factory: Any
) -> Iterator[tuple[EcrEmulator, EcrEmulator]]:
    """ECR on loopback: only the host reaches the registries (the lister plans from moto)."""
    use_moto(bridge_moto, monkeypatch)
    src, dst = _cloud("127.0.0.1", registry_factory)
    yield src, dst
    src.stop()
    dst.stop()


@pytest.fixture
def bridged_cloud(
    bridge_moto: MotoServer, monkeypatch: pytest.MonkeyPatch, registry_factory: Any
) -> Iterator[tuple[EcrEmulator, EcrEmulator]]:
    """ECR whose front doors listen on the bridge's gateway: the copier function copies through them."""
    use_moto(bridge_moto, monkeypatch)
    src, dst = _cloud(bridge_gateway(), registry_factory)
    yield src, dst
    src.stop()
    dst.stop()
