"""Registries with a CA of their own, deployed: the CAs come from the SSM parameter `registryCaParameter`.

The stack keeps the PEM texts in SSM (a Lambda's environment holds only 4 KB); the lister and the copy
task read the parameter under the template's own policies (IAM enforced as in test_iam_as_deployed).
The source is a real docker-registry serving TLS with a certificate from a CA made here, trusted by
nothing else: the image lands only if both halves (our client and skopeo) got the CA from SSM.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecr_transfer.ledger.dynamodb import DynamoDBLedger
from support.tls import TlsRegistry, make_ca

from .ecr_support import ACCOUNT_A, helper_client
from .iam_run import World, assert_nothing_refused, outcomes, run_pipeline
from .iam_world import REGION, TABLE, Stack

pytest_plugins = ["integration.iam_world", "integration.iam_run"]
CA_PARAMETER = "/ecr-transfer/registry-cas"


@pytest.fixture
def tls_source(world: World, tmp_path: Path) -> Iterator[tuple[TlsRegistry, str]]:
    """A TLS registry with its own CA holding library/nginx:1.27, and that CA kept in SSM."""
    registry = TlsRegistry(make_ca(tmp_path / "ca", "corporate CA")).start()
    try:
        digest = registry.push(world.images.layout, "multi", "library/nginx", "1.27")
        pem = registry.ca.ca.read_text()
        helper_client("ssm", REGION).put_parameter(
            Name=CA_PARAMETER, Type="String", Value=json.dumps({registry.host: pem})
        )
        yield registry, digest
    finally:
        registry.stop()


def _params(registry: TlsRegistry) -> dict[str, str]:
    return {
        "sourceType": "Public",
        "srcList": "SELECTED",
        "srcImageList": f"{registry.host}/library/nginx:1.27",
        "registryCaParameter": CA_PARAMETER,
    }


def test_a_private_ca_kept_in_ssm_is_trusted_by_the_lister_and_the_copy_task(
    world: World, tls_source: tuple[TlsRegistry, str]
) -> None:
    registry, digest = tls_source
    dst = world.ecr(ACCOUNT_A, REGION)
    stack = world.deploy(Stack(_params(registry)))

    run = run_pipeline(world, stack)

    assert_nothing_refused(world)
    assert run.exit_code == 0 and dst.digest("library/nginx", "1.27") == digest
    assert outcomes("run-1") == {"library/nginx:1.27": ("copied", digest)}
    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT_A}:parameter{CA_PARAMETER}"
    reads = {
        (d["principal"].split("/")[1], d["resource"])
        for d in world.moto.decisions()
        if d["action"] == "ssm:GetParameter"
    }
    assert {("ListerFunctionRole", parameter), ("TaskRole", parameter)} <= reads


def test_without_the_ca_grant_the_copy_task_cannot_read_the_cas_and_copies_nothing(
    world: World, tls_source: tuple[TlsRegistry, str]
) -> None:
    registry, _ = tls_source
    dst = world.ecr(ACCOUNT_A, REGION)
    stack = world.deploy(Stack(_params(registry), without=("TaskRole", "ReadRegistryCas")))

    run = run_pipeline(world, stack)

    parameter = f"arn:aws:ssm:{REGION}:{ACCOUNT_A}:parameter{CA_PARAMETER}"
    assert ("TaskRole", "ssm:GetParameter", parameter) in world.moto.refused()
    # Every retry would be refused the same way: the batch ends at once, each image failed with the cause.
    assert run.exit_code == 0 and dst.digest("library/nginx", "1.27") is None
    assert outcomes("run-1") == {"library/nginx:1.27": ("failed", None)}
    ledger = DynamoDBLedger(TABLE, client=helper_client("dynamodb", REGION), heartbeat=False)
    (outcome,) = ledger.outcomes("run-1")
    assert outcome.error == (
        f"cannot set up the copy: SSM parameter {CA_PARAMETER}: AccessDeniedException: User: "
        f"arn:aws:sts::{ACCOUNT_A}:assumed-role/TaskRole/TaskRole-session is not authorized to perform: "
        f"ssm:GetParameter on resource: {parameter}"
    )
