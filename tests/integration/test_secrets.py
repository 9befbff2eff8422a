"""No credential ever leaves the process: not on skopeo's command line, not in logs at any level,
not in the ledger, the CLI's JSON or the lister's payload. Authfiles are 0600 and gone after
the run, also when it fails.

Credentials covered: a registry password (file: secret), a registry token (env: secret), AWS
keys for the other partition (Secrets Manager, moto) and ECR authorization tokens (moto's
GetAuthorizationToken). Each is searched for as itself and as the base64 `user:secret` that
an auth header or authfile carries.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecr_transfer import cli
from ecr_transfer.cloud.lister import list_images
from ecr_transfer.ledger.sqlite import SQLiteLedger
from support.runs import start_cli
from support.skopeo_wrapper import Skopeo, install

from .conftest import Transfer
from .ecr_support import ACCOUNT_A, ACCOUNT_B, SECRET, EcrEmulator, EcrPair, MotoServer

pytest_plugins = ["integration.ecr_fixtures"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Skopeo:
    return install(tmp_path, monkeypatch)


def forms(user: str, secret: str) -> list[str]:
    """A secret as itself and as the base64 `user:secret` of an auth header or authfile."""
    return [secret, base64.b64encode(f"{user}:{secret}".encode()).decode()]


def assert_nowhere(secrets: Iterable[str], places: dict[str, str | bytes]) -> None:
    leaks = [
        (name, secret[:6] + "…")
        for name, text in places.items()
        for secret in secrets
        if (secret.encode() if isinstance(text, bytes) else secret) in text  # type: ignore[operator]
    ]
    assert not leaks, f"credentials found in: {leaks}"


def ledger_bytes(ledger: Path) -> bytes:
    """The SQLite file and its WAL/shm side files: whatever a reader of the disk could see."""
    return b"".join(p.read_bytes() for p in ledger.parent.glob(ledger.name + "*"))


def check_authfiles(skopeo: Skopeo, hosts: list[str]) -> None:
    records = [r for r in skopeo.records() if "copy" in r["argv"]]  # type: ignore[operator]
    assert records, "no skopeo copy ran"
    for record in records:
        argv: list[str] = record["argv"]  # type: ignore[assignment]
        assert "--src-creds" not in argv and "--dest-creds" not in argv and "--creds" not in argv
        seen: dict[str, Any] = record["authfile"]  # type: ignore[assignment]
        # While skopeo ran: the file is 0600 in a 0700 directory, owned by us, for both hosts.
        assert (seen.get("mode"), seen.get("dir_mode"), seen.get("uid")) == (0o600, 0o700, os.getuid()), seen
        assert seen["hosts"] == sorted(hosts), seen
        # After the run: gone, directory and all.
        assert not Path(seen["path"]).exists() and not Path(seen["path"]).parent.exists(), seen["path"]


def test_registry_password_and_token_stay_secret_in_success_and_failure(transfer: Transfer, skopeo: Skopeo) -> None:
    password, token = "pa55-Src-" + os.urandom(6).hex(), "tok-Dst-" + os.urandom(6).hex()
    src = transfer.registries(auth=("alice", password))
    dst = transfer.registries(auth=("token", token))
    digests = transfer.seed({"private/app:1": "multi", "private/other:2": "single"}, registry=src)
    secret_file = transfer.tmp_path / "src-login.json"
    secret_file.write_text(json.dumps({"username": "alice", "password": password}))
    transfer.monkeypatch.setenv("DST_LOGIN", json.dumps({"token": token}))
    cfg = transfer.write_config(
        sourceType="Public",
        srcImageList=f"{src.host}/private/app:1\n{src.host}/private/other:2",
        srcCredential=f"file:{secret_file}",
        destType="Registry",
        destRegistry=dst.host,
        destCredential="env:DST_LOGIN",
        insecureRegistries=[src.host, dst.host],
    )
    ledger = transfer.tmp_path / "ledger.db"
    secrets = forms("alice", password) + forms("token", token)

    proc = start_cli(cfg, ledger, verbose=2)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "DEBUG" in err, "-vv must really log at DEBUG for this test to mean anything"
    assert dst.manifest_digest("private/app", "1") == digests["private/app:1"]
    check_authfiles(skopeo, [src.host, dst.host])
    assert_nowhere(
        secrets,
        {"json": out, "stderr -vv": err, "skopeo argv": json.dumps(skopeo.calls()), "ledger": ledger_bytes(ledger)},
    )

    # A failing run: the destination refuses the login. Same guarantees, authfile gone too.
    transfer.monkeypatch.setenv("DST_LOGIN", json.dumps({"token": "wrong-" + token}))
    (dst_repo_tag,) = ["private/app:1"]
    dst.delete_manifest(*dst_repo_tag.split(":"))
    before = len(skopeo.records())
    proc = start_cli(cfg, ledger, "--force", verbose=2)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 1, err
    failed = [i for i in json.loads(out)["items"] if i["status"] == "failed"]
    assert failed and all("unauthorized" in i["error"] or "authentication required" in i["error"] for i in failed)
    assert len(skopeo.records()) > before, "the failing run must have run skopeo (with an authfile)"
    check_authfiles(skopeo, [src.host, dst.host])
    assert_nowhere(
        [*secrets, *forms("token", "wrong-" + token)],
        {"json": out, "stderr -vv": err, "skopeo argv": json.dumps(skopeo.calls()), "ledger": ledger_bytes(ledger)},
    )


def ecr_secrets(pair: EcrPair) -> list[str]:
    keys = json.loads(
        boto3.client("secretsmanager", region_name="us-east-1").get_secret_value(SecretId=SECRET)["SecretString"]
    )
    found = [keys["access_key_id"], keys["secret_access_key"]]
    for account in (ACCOUNT_A, ACCOUNT_B):
        found += forms("AWS", EcrEmulator.token_password(account))
    return found


def test_aws_keys_and_ecr_tokens_stay_secret_in_logs_json_ledger_and_argv(
    aws: MotoServer, ecr_pair: EcrPair, transfer: Transfer, skopeo: Skopeo, caplog: pytest.LogCaptureFixture
) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    digest = a.publish(images.layout, "app-a", "team/app", "1.0")
    cfg = transfer.write_config(**ecr_pair.raw_settings())
    secrets = ecr_secrets(ecr_pair)

    # The CLI at -vv, as a user would run it.
    proc = start_cli(cfg, transfer.tmp_path / "cli.db", verbose=2)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert b.digest("team/app", "1.0") == digest
    assert "DEBUG" in err
    check_authfiles(skopeo, [a.host, a.address, b.host, b.address])
    places: dict[str, str | bytes] = {
        "json": out,
        "stderr -vv": err,
        "skopeo argv": json.dumps(skopeo.calls()),
        "ledger": ledger_bytes(transfer.tmp_path / "cli.db"),
    }

    # In-process with every logger at DEBUG (what a Lambda's or a library user's logging sees).
    caplog.set_level(logging.DEBUG)
    code = cli.main(
        ["run", "--config", str(cfg), "--ledger", str(transfer.tmp_path / "inproc.db"), "--json", "--force"]
    )
    assert code == 0, transfer.capsys.readouterr().err
    places["in-process logs"] = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    places["in-process output"] = "".join(transfer.capsys.readouterr())
    assert len(caplog.records) > 20, "DEBUG logging must be on for this test to mean anything"
    assert_nowhere(secrets, places)


def test_lister_payload_and_work_list_carry_no_credential(
    aws: MotoServer, ecr_pair: EcrPair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a, images = ecr_pair.a, ecr_pair.images
    a.publish(images.layout, "single", "team/app", "2.0")
    settings = ecr_pair.settings()
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="work")
    environ = {
        **os.environ,
        "ECR_TRANSFER_WORK_BUCKET": "work",
        "SOURCE_TYPE": "Amazon_ECR",
        "SRC_REGION": "us-east-1",
        "SRC_LIST": "ALL",
        "DEST_TYPE": "Amazon_ECR",
        "DEST_REGION": "cn-north-1",
        "DEST_ACCOUNT_ID": ACCOUNT_B,
        "DEST_CREDENTIAL": SECRET,
        "REGISTRY_ENDPOINTS": json.dumps(dict(settings.registry_endpoints)),
        "INSECURE_REGISTRIES": ",".join(settings.insecure_registries),
    }
    caplog.set_level(logging.DEBUG)
    payload = list_images({"run_id": "r1"}, environ=environ, s3=s3, ledger=SQLiteLedger(tmp_path / "l.db"))

    assert payload["to_copy"] == 1
    work_list = s3.get_object(Bucket="work", Key=payload["work_list_key"])["Body"].read()
    assert b"team/app:2.0" in work_list
    assert_nowhere(
        ecr_secrets(ecr_pair),
        {
            "lister payload": json.dumps(payload),
            "work list": work_list,
            "logs": "\n".join(r.getMessage() for r in caplog.records),
        },
    )
