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

import pytest

from support import docker_engine, standins
from support.docker_engine import Engine
from support.sam import ROOT, python312_env, sam_cli

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
