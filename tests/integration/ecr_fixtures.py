"""pytest fixtures for ECR integration tests; load with `pytest_plugins = ["integration.ecr_fixtures"]`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from ecr_transfer.local.oci import SampleImages

from .ecr_support import (
    ACCOUNT_A,
    ACCOUNT_B,
    SECRET,
    EcrEmulator,
    EcrPair,
    MotoServer,
    account_keys,
    moto_server_on,
    use_moto,
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with moto_server_on() as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """A clean moto_server; every boto3 client in the process (and the CLI) talks to it."""
    return use_moto(moto_server, monkeypatch)


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
