"""Acceptance: `ecr-transfer run` moves ECR(A, us-east-1) -> ECR(B, cn-north-1), outcomes in DynamoDB.

The second run copies nothing (no skopeo process) and plans from bulk listings: the ECR calls are
counted, and they do not grow with the number of tags.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecr_transfer.cli import main
from ecr_transfer.ledger.dynamodb import table_definition

from .conftest import SkopeoRecorder
from .ecr_support import ApiCalls, EcrPair, MotoServer

pytest_plugins = ["integration.ecr_fixtures"]

TABLE = "ecr-transfer-ledger"
IMAGES = {
    ("team/app", "1.0"): "app-a",
    ("team/app", "1.1"): "app-b",
    ("team/app", "1.2"): "single",
    ("tools/multi", "v1"): "multi",
    ("tools/multi", "v2"): "single",
}


def cli_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    return code, json.loads(captured.out)


def test_ecr_to_china_ecr_with_dynamodb_ledger(
    aws: MotoServer,
    ecr_pair: EcrPair,
    skopeo_recorder: SkopeoRecorder,
    write_config: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    want = {f"{repo}:{tag}": a.publish(images.layout, sample, repo, tag) for (repo, tag), sample in IMAGES.items()}
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(**table_definition(TABLE))
    config = write_config(**ecr_pair.raw_settings())
    api = ApiCalls(monkeypatch)
    args = ("run", "--config", str(config), "--ledger", f"dynamodb://{TABLE}")

    code, first = cli_json(capsys, *args)

    assert code == 0, first
    assert first["counts"] == {"planned": 5, "copied": 5, "skipped": 0, "failed": 0}
    for ref, digest in want.items():
        repo, tag = ref.split(":")
        assert b.digest(repo, tag) == digest
        assert b.registry.manifest_digest(repo, tag) == digest
    assert sorted(r["repositoryName"] for r in b.ecr.describe_repositories()["repositories"]) == [
        "team/app",
        "tools/multi",
    ]
    row = ddb.get_item(TableName=TABLE, Key={"Image": {"S": "team/app"}, "Tag": {"S": "1.1"}})["Item"]
    assert row["Status"] == {"S": "Done"}
    assert row["TransferStatus"] == {"S": "copied"}
    assert row["SourceDigest"] == row["TargetDigest"] == {"S": want["team/app:1.1"]}
    assert row["RunId"]["S"] == first["run_id"]
    assert len(skopeo_recorder.copies()) == 5
    first_calls = dict(api.calls)
    # Neither the China keys nor a registry token ended up in the ledger or on a command line.
    secret = json.loads(
        boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(
            SecretId=ecr_pair.settings().dest_credential
        )["SecretString"]
    )
    everything = json.dumps(ddb.scan(TableName=TABLE)["Items"]) + json.dumps(skopeo_recorder.calls())
    for value in (secret["access_key_id"], secret["secret_access_key"], "auth-token"):
        assert value not in everything

    api.reset()
    code, second = cli_json(capsys, *args)

    assert code == 0, second
    assert second["counts"] == {"planned": 5, "copied": 0, "skipped": 5, "failed": 0}
    assert len(skopeo_recorder.copies()) == 5  # no new skopeo process
    ecr = api.of("ecr")
    second_calls = dict(api.calls)
    # One DescribeRepositories (source), one paginated DescribeImages per repository and side,
    # nothing per tag, no repository creation; one registry token, the source's, for its referrers
    # API (copyReferrers: untagged signatures and SBOMs are listed there, one request per image).
    assert ecr == {"DescribeRepositories": 1, "DescribeImages": 4, "GetAuthorizationToken": 1}
    assert api.of("sts") == {"GetCallerIdentity": 1}  # the source account (not configured)
    assert api.of("secretsmanager") == {"GetSecretValue": 1}  # destCredential, read once
    code, status = cli_json(capsys, "status", "--ledger", f"dynamodb://{TABLE}")
    assert code == 0
    assert {o["status"] for o in status["items"]} == {"skipped"}
    assert len(status["items"]) == 5
    with capsys.disabled():  # the numbers for the report (pytest -s)
        print(f"\nfirst run AWS calls: {sorted(first_calls.items())}")
        print(f"second run AWS calls: {sorted(second_calls.items())}")
