"""Credentials per side: default chain, AssumeRole (+ external id), keys from a secret; Secrets Manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.credentials import AssumeRoleCredentialFetcher
from botocore.exceptions import ClientError
from moto import mock_aws

from ecr_transfer.catalog import RegistryCatalog
from ecr_transfer.context import build_context
from ecr_transfer.ecr.catalog import EcrCatalog
from ecr_transfer.ecr.secrets import SecretsManagerResolver, secret_region
from ecr_transfer.ecr.sessions import open_side
from ecr_transfer.ecr.side import home_region
from ecr_transfer.errors import ConfigError
from ecr_transfer.registry.credentials import Credential
from ecr_transfer.settings import from_mapping

DEFAULT = "123456789012"
ROLE_ACCOUNT = "111122223333"
CHINA = "210987654321"
ROLE = f"arn:aws:iam::{ROLE_ACCOUNT}:role/ecr-transfer-source"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def china_keys() -> dict[str, str]:
    """Access keys of an IAM user in the China account (what DTH users keep in their secret)."""
    creds = boto3.client("sts", region_name="cn-north-1").assume_role(
        RoleArn=f"arn:aws-cn:iam::{CHINA}:role/bootstrap", RoleSessionName="setup"
    )["Credentials"]
    iam = boto3.client(
        "iam",
        region_name="cn-north-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    iam.create_user(UserName="transfer")
    key = iam.create_access_key(UserName="transfer")["AccessKey"]
    return {"access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}


class RecordingFactory:
    """boto3.Session, remembering every STS AssumeRole request made through its sessions."""

    def __init__(self) -> None:
        self.assume_role_calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> boto3.Session:
        session = boto3.Session(**kwargs)
        session.events.register("provide-client-params.sts.AssumeRole", self._record)
        return session

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.assume_role_calls.append(dict(params))


def settings(**raw: Any) -> Any:
    return from_mapping({"sourceType": "Amazon_ECR", "srcRegion": "us-east-1", "srcList": "ALL", **raw})


def test_default_chain_is_the_callers_account(aws: None) -> None:
    side = open_side(settings(destRegion="eu-west-1"), "source")
    assert (side.account_id, side.host) == (DEFAULT, f"{DEFAULT}.dkr.ecr.us-east-1.amazonaws.com")


def test_assume_role_with_external_id(aws: None) -> None:
    factory = RecordingFactory()
    side = open_side(
        settings(srcRoleArn=ROLE, srcExternalId="shared-secret-id", destRegion="eu-west-1"),
        "source",
        session_factory=factory,
    )
    assert side.account_id == ROLE_ACCOUNT
    assert side.host == f"{ROLE_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    (call,) = factory.assume_role_calls
    assert call["RoleArn"] == ROLE
    assert call["ExternalId"] == "shared-secret-id"
    assert call["RoleSessionName"] == "ecr-transfer-source"
    # The ECR calls are made as the role: they see the role account's repositories.
    keys = role_keys()
    boto3.client(
        "ecr",
        region_name="us-east-1",
        aws_access_key_id=keys["aws_access_key_id"],
        aws_secret_access_key=keys["aws_secret_access_key"],
        aws_session_token=keys["aws_session_token"],
    ).create_repository(repositoryName="only-in-role-account")
    assert EcrCatalog(side.client("ecr"), registry=side.host, registry_id=side.account_id).repositories() == [
        "only-in-role-account"
    ]


def test_a_role_that_cannot_be_assumed_is_a_configuration_error(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any) -> Any:
        error = {"Code": "AccessDenied", "Message": "User is not authorized to perform: sts:AssumeRole"}
        raise ClientError({"Error": error}, "AssumeRole")  # type: ignore[arg-type]

    monkeypatch.setattr(AssumeRoleCredentialFetcher, "fetch_credentials", refuse)
    with pytest.raises(ConfigError) as raised:
        open_side(settings(srcRoleArn=ROLE, srcExternalId="wrong", destRegion="eu-west-1"), "source")
    assert str(raised.value) == (
        f"cannot assume srcRoleArn {ROLE}: AccessDenied: User is not authorized to perform: sts:AssumeRole"
    )


def role_keys() -> dict[str, str]:
    creds = boto3.client("sts").assume_role(RoleArn=ROLE, RoleSessionName="check")["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def test_keys_from_a_secret_reach_the_other_partition(aws: None) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.create_secret(Name="china-keys", SecretString=json.dumps(china_keys()))
    resolver = SecretsManagerResolver(lambda region: boto3.client("secretsmanager", region_name=region), "us-east-1")

    side = open_side(
        settings(destRegion="cn-north-1", destAccountId=CHINA, destCredential="china-keys"),
        "destination",
        secret_resolver=resolver,
    )

    assert side.host == f"{CHINA}.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert side.partition == "aws-cn"
    assert side.session.client("sts").get_caller_identity()["Account"] == CHINA


def test_each_side_has_its_own_credentials(aws: None) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="china-keys", SecretString=json.dumps(china_keys())
    )
    context = build_context(
        settings(srcRoleArn=ROLE, destRegion="cn-north-1", destAccountId=CHINA, destCredential="china-keys"),
        environ={"AWS_REGION": "us-east-1"},
    )
    try:
        src_host = f"{ROLE_ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
        dst_host = f"{CHINA}.dkr.ecr.cn-north-1.amazonaws.com.cn"
        assert (context.source.default_registry, context.destination.registry) == (src_host, dst_host)
        # moto's token names the account whose credentials asked for it.
        assert context.credentials(src_host) == Credential("AWS", f"{ROLE_ACCOUNT}-auth-token")
        assert context.credentials(dst_host) == Credential("AWS", f"{CHINA}-auth-token")
        assert context.credentials("docker.io") is None
    finally:
        context.close()


def test_registry_login_secret_on_an_ecr_side_is_refused(aws: None, tmp_path: Any) -> None:
    login = tmp_path / "login.json"
    login.write_text(json.dumps({"username": "u", "password": "p"}))
    with pytest.raises(ConfigError, match="destCredential for an Amazon ECR destination must hold AWS access keys"):
        open_side(settings(destRegion="cn-north-1", destCredential=f"file:{login}"), "destination")


def test_missing_secret_names_the_secret_not_its_value(aws: None) -> None:
    resolver = SecretsManagerResolver(lambda region: boto3.client("secretsmanager", region_name=region), "us-east-1")
    with pytest.raises(ConfigError) as raised:
        resolver("does-not-exist")
    assert (
        str(raised.value)
        == "does-not-exist: cannot read the secret in us-east-1: ResourceNotFoundException: no such secret"
    )


def test_secret_arn_is_read_in_its_own_region(aws: None) -> None:
    arn = boto3.client("secretsmanager", region_name="eu-west-1").create_secret(Name="k", SecretString="{}")["ARN"]
    regions: list[str] = []

    def client(region: str) -> Any:
        regions.append(region)
        return boto3.client("secretsmanager", region_name=region)

    assert SecretsManagerResolver(client, "us-east-1")(arn) == "{}"
    assert regions == ["eu-west-1"]
    assert secret_region("plain-name", "us-east-1") == "us-east-1"


def test_secrets_live_in_aws_region_else_the_default_chain_side_region() -> None:
    cross = from_mapping(
        {"sourceType": "Amazon_ECR", "srcRegion": "us-west-2", "srcList": "ALL", "destRegion": "cn-north-1",
         "destCredential": "keys"}
    )  # fmt: skip
    assert home_region(cross, {"AWS_REGION": "eu-west-1"}) == "eu-west-1"
    assert home_region(cross, {}) == "us-west-2"  # the side on the default chain is where we run
    reverse = from_mapping(
        {"sourceType": "Amazon_ECR", "srcRegion": "us-west-2", "srcList": "ALL", "srcCredential": "keys",
         "destRegion": "cn-northwest-1"}
    )  # fmt: skip
    assert home_region(reverse, {}) == "cn-northwest-1"


def _login(tmp_path: Any, name: str, registry: str | None = None) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"username": name, "password": "pw", **({"registry": registry} if registry else {})}))
    return f"file:{path}"


def test_an_ecr_source_and_a_registry_destination_are_two_sides_of_one_context(aws: None, tmp_path: Any) -> None:
    context = build_context(
        settings(destType="Registry", destRegistry="mirror.example", destCredential=_login(tmp_path, "mirror")),
        environ={"AWS_REGION": "us-east-1"},
    )
    try:
        src_host = f"{DEFAULT}.dkr.ecr.us-east-1.amazonaws.com"
        assert isinstance(context.source, EcrCatalog) and context.source.registry == src_host
        assert isinstance(context.destination, RegistryCatalog) and context.destination.registry == "mirror.example"
        assert context.credentials(src_host) == Credential("AWS", f"{DEFAULT}-auth-token")
        assert context.credentials("mirror.example") == Credential("mirror", "pw")
        assert len(context.copy_gates) == 2  # the pull budget, the ECR source's push pacing
    finally:
        context.close()


def test_a_registry_source_and_an_ecr_destination_are_two_sides_of_one_context(aws: None, tmp_path: Any) -> None:
    raw = {
        "sourceType": "Public",
        "srcList": "SELECTED",
        "srcImageList": "quay.io/team/app:1",
        "destRegion": "eu-west-1",
    }
    context = build_context(from_mapping({**raw, "srcCredential": _login(tmp_path, "robot")}), environ={})
    try:
        dst_host = f"{DEFAULT}.dkr.ecr.eu-west-1.amazonaws.com"
        assert isinstance(context.source, RegistryCatalog) and context.source.default_registry is None
        assert isinstance(context.destination, EcrCatalog) and context.destination.registry == dst_host
        assert context.credentials("quay.io") == Credential("robot", "pw")  # the secret names no registry
        assert context.credentials(dst_host) == Credential("AWS", f"{DEFAULT}-auth-token")
    finally:
        context.close()


def test_problems_on_both_sides_are_reported_together(tmp_path: Any) -> None:
    raw = {"sourceType": "Public", "srcList": "SELECTED", "srcImageList": "quay.io/team/app:1", "destType": "Registry"}
    bad = from_mapping(
        {**raw, "destRegistry": "mirror.example", "srcCredential": "env:NOT_SET_ANYWHERE", "destCredential": "named"}
    )
    with pytest.raises(ConfigError) as raised:
        build_context(bad, environ={})
    assert str(raised.value) == (
        "env:NOT_SET_ANYWHERE: environment variable NOT_SET_ANYWHERE is not set\n"
        "named: a secret name needs AWS Secrets Manager; use file:PATH or env:VAR for local credentials"
    )


def test_no_aws_credentials_at_all_says_so_and_how_to_provide_them(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It used to read "destAccountId: cannot use the destination credentials", destAccountId unset.
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)

    with pytest.raises(ConfigError) as info:
        open_side(settings(destRegion="eu-west-1"), "destination")

    assert str(info.value) == (
        "no AWS credentials found for the Amazon ECR destination in eu-west-1: set AWS_PROFILE (after "
        "`aws configure` or `aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, run where an instance or "
        "task role applies, or name access keys in destCredential"
    )
