"""pytest fixtures for ECR integration tests; load with `pytest_plugins = ["integration.ecr_fixtures"]`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecr_transfer.local.oci import SampleImages

from .ecr_support import (
    ACCOUNT_A,
    ACCOUNT_B,
    OPENER,
    SECRET,
    EcrEmulator,
    EcrPair,
    MotoServer,
    account_keys,
    free_port,
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    binary = Path(sys.executable).parent / "moto_server"
    command = str(binary) if binary.exists() else shutil.which("moto_server")
    if command is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]')")
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the whole session, closed at teardown
    proc = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            OPENER.open(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise RuntimeError(f"moto_server did not start: {log.read().decode(errors='replace')}") from None
            time.sleep(0.05)
    yield MotoServer(url)
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto_server; every boto3 client in the process (and the CLI) talks to it."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    return moto_server


@pytest.fixture
def ecr_pair(aws: MotoServer, registry_factory: Any, oci_images: SampleImages) -> Iterator[EcrPair]:
    keys_b = account_keys(ACCOUNT_B, "cn-north-1")
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=SECRET,
        SecretString=json.dumps(
            {"access_key_id": keys_b["aws_access_key_id"], "secret_access_key": keys_b["aws_secret_access_key"]}
        ),
    )
    reg_a = registry_factory(auth=("AWS", EcrEmulator.token_password(ACCOUNT_A)))
    reg_b = registry_factory(auth=("AWS", EcrEmulator.token_password(ACCOUNT_B)))
    a = EcrEmulator(reg_a, ACCOUNT_A, "us-east-1")
    b = EcrEmulator(reg_b, ACCOUNT_B, "cn-north-1", **keys_b)
    yield EcrPair(a, b, oci_images)
    a.stop()
    b.stop()
