"""The bad-input corpus (tests/data/bad_inputs.yaml), cases that need something real to be wrong
about: a registry that is down, refuses a password or lacks an image (runtime: the failure is
recorded with its cause, exit 1), and Secrets Manager secrets that are missing or malformed
(moto: exit 2, nothing copied).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecr_transfer import cli
from ecr_transfer.local.registry import LocalRegistry
from integration.ecr_support import MotoServer
from support.bad_inputs import assert_json_error, cases, fill, placeholders, write_config
from support.skopeo_wrapper import Skopeo, install

pytest_plugins = ["integration.ecr_fixtures"]
RUNTIME_CASES = cases("runtime")
AWS_CASES = cases("aws")


@pytest.fixture
def skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Skopeo:
    return install(tmp_path, monkeypatch)


def run(config: Path, ledger: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["run", "--config", str(config), "--ledger", str(ledger), "--json"])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", RUNTIME_CASES, ids=[c["id"] for c in RUNTIME_CASES])
def test_registry_problems_are_recorded_with_their_cause(
    case: dict[str, Any],
    registry_factory: Callable[..., LocalRegistry],
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    skopeo: Skopeo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = registry_factory(auth=("alice", "right-password"))
    seeded_src({"team/app:1": "single"}, registry=src)
    (tmp_path / "right.json").write_text(json.dumps({"username": "alice", "password": "right-password"}))
    values = placeholders(tmp_path, src=src.host, dst=dst_registry.host)
    config = write_config(case, tmp_path, values, extra={"srcCredential": f"file:{tmp_path}/right.json"})
    values["config"] = str(config)

    code, out, err = run(config, tmp_path / "ledger.db", capsys)

    assert code == case.get("exit", 1), err
    assert dst_registry.catalog() == []
    if "stderr" in case:
        assert err.rstrip("\n") == fill(case["stderr"], values)
        assert_json_error(out, err)
        assert skopeo.calls() == []
        return
    (item,) = json.loads(out)["items"]
    assert item["status"] == "failed"
    if "error" in case:
        assert item["error"] == fill(case["error"], values)
    for part in case.get("error_contains", []):
        assert fill(part, values) in item["error"]


@pytest.mark.parametrize("case", AWS_CASES, ids=[c["id"] for c in AWS_CASES])
def test_bad_secrets_in_secrets_manager_exit_2(
    case: dict[str, Any],
    aws: MotoServer,
    skopeo: Skopeo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if "secret" in case:
        boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name=case["secret"]["name"], SecretString=case["secret"]["value"]
        )
    values = placeholders(tmp_path, src="127.0.0.1:9", dst="127.0.0.1:9")
    config = write_config(case, tmp_path, values)
    values["config"] = str(config)

    code, out, err = run(config, tmp_path / "ledger.db", capsys)

    assert err.rstrip("\n") == fill(case["stderr"], values)
    assert code == 2 and skopeo.calls() == []
    assert_json_error(out, err)


def test_a_skopeo_that_cannot_run_fails_each_image_with_the_cause(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seeded_src({"team/app:1": "single", "team/other:1": "app-a"})
    broken = tmp_path / "skopeo"
    broken.write_text("#!/bin/sh\n")  # not executable
    monkeypatch.setenv("ECR_TRANSFER_SKOPEO", str(broken))
    values = placeholders(tmp_path, src=src_registry.host, dst=dst_registry.host)
    config = write_config(
        {"id": "broken-skopeo"}, tmp_path, values, extra={"srcImageList": "{src}/team/app:1,{src}/team/other:1"}
    )

    code, out, _ = run(config, tmp_path / "ledger.db", capsys)

    assert code == 1
    result = json.loads(out)
    assert result["counts"] == {"planned": 2, "copied": 0, "skipped": 0, "failed": 2}
    assert {i["error"] for i in result["items"]} == {f"cannot run skopeo ({broken}): Permission denied"}
