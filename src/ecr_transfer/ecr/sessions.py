"""AWS sessions per side of a transfer, each from its own credentials.

- Default chain (task role, profile, environment): the same-account case.
- `srcRoleArn`/`destRoleArn` (+ optional external id): AssumeRole, refreshed automatically by
  botocore before the temporary credentials expire.
- `srcCredential`/`destCredential` naming a secret with the Data Transfer Hub format
  `{"access_key_id": ..., "secret_access_key": ...}`: the other partition (global <-> China),
  where this deployment's role means nothing. A role may be assumed on top of those keys.

STS calls go to the side's own region, so an aws-cn role is assumed through the aws-cn STS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    Credentials,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from ecr_transfer.ecr.hosts import registry_for
from ecr_transfer.ecr.pacing import client_config
from ecr_transfer.errors import ConfigError
from ecr_transfer.registry.credentials import SecretResolver, resolve_secret
from ecr_transfer.settings import Settings
from ecr_transfer.sides import SideName

SessionFactory = Callable[..., boto3.Session]
"""boto3.Session or a test double taking the same keyword arguments."""


@dataclass(frozen=True, slots=True)
class SideConfig:
    """What the settings say about one ECR side."""

    side: SideName
    region: str
    account_id: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    credential: str | None = None
    """Secret spec (name, ARN, file:PATH, env:VAR) holding AWS access keys."""

    @property
    def prefix(self) -> str:
        return "src" if self.side == "source" else "dest"

    @classmethod
    def from_settings(cls, settings: Settings, side: SideName) -> SideConfig:
        if side == "source":
            region, account = settings.src_region, settings.src_account_id
            role, external, credential = settings.src_role_arn, settings.src_external_id, settings.src_credential
        else:
            region, account = settings.dest_region, settings.dest_account_id
            role, external, credential = settings.dest_role_arn, settings.dest_external_id, settings.dest_credential
        if not region:
            raise ConfigError(f"{'srcRegion' if side == 'source' else 'destRegion'} is required for Amazon ECR")
        return cls(side, region, account, role, external, credential)


class _AssumedRoleProvider(CredentialProvider):
    METHOD = "ecr-transfer-assume-role"

    def __init__(self, fetcher: AssumeRoleCredentialFetcher) -> None:
        super().__init__()
        self._fetcher = fetcher

    def load(self) -> Credentials:
        return DeferredRefreshableCredentials(refresh_using=self._fetcher.fetch_credentials, method=self.METHOD)


def _key_session(config: SideConfig, resolver: SecretResolver | None, factory: SessionFactory) -> boto3.Session | None:
    if not config.credential:
        return None
    doc = resolve_secret(config.credential, resolver)
    if doc.aws_access_key_id is None or doc.aws_secret_access_key is None:
        raise ConfigError(
            f"{config.prefix}Credential for an Amazon ECR {config.side} must hold AWS access keys "
            '({"access_key_id": "...", "secret_access_key": "..."}), not a registry login',
            source=config.credential,
        )
    return factory(
        aws_access_key_id=doc.aws_access_key_id,
        aws_secret_access_key=doc.aws_secret_access_key,
        region_name=config.region,
    )


def assume_role_session(base: boto3.Session, config: SideConfig) -> boto3.Session:
    """A session whose credentials come from AssumeRole on `base`, refreshed before they expire."""
    assert config.role_arn is not None
    source_credentials = base.get_credentials()
    if source_credentials is None:
        raise ConfigError(f"no AWS credentials to assume {config.prefix}RoleArn with", source=config.role_arn)
    extra: dict[str, Any] = {"RoleSessionName": f"ecr-transfer-{config.side}"}
    if config.external_id:
        extra["ExternalId"] = config.external_id
    base_botocore: botocore.session.Session = base._session  # boto3 exposes no public accessor
    fetcher = AssumeRoleCredentialFetcher(
        client_creator=functools.partial(
            base_botocore.create_client, region_name=config.region, config=client_config()
        ),
        source_credentials=source_credentials,
        role_arn=config.role_arn,
        extra_args=extra,
    )
    session = botocore.session.Session()
    session.register_component("credential_provider", CredentialResolver([_AssumedRoleProvider(fetcher)]))
    session.set_config_variable("region", config.region)
    return boto3.Session(botocore_session=session, region_name=config.region)


def side_session(
    config: SideConfig,
    *,
    secret_resolver: SecretResolver | None = None,
    session_factory: SessionFactory = boto3.Session,
) -> boto3.Session:
    """The session for one side: secret keys, else the default chain; then the role, if any."""
    base = _key_session(config, secret_resolver, session_factory) or session_factory(region_name=config.region)
    if not config.role_arn:
        return base
    return assume_role_session(base, config)


def _describe(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc)


def side_account(session: boto3.Session, config: SideConfig) -> str:
    """The configured account id, else the role's account, else the caller's own (GetCallerIdentity)."""
    if config.account_id:
        return config.account_id
    if config.role_arn:
        return config.role_arn.split(":")[4]
    try:
        identity = session.client("sts", region_name=config.region, config=client_config()).get_caller_identity()
    except NoCredentialsError:
        # Not a problem with the account id (which nobody set): there are no credentials at all.
        raise ConfigError(
            f"no AWS credentials found for the Amazon ECR {config.side} in {config.region}: set AWS_PROFILE "
            "(after `aws configure` or `aws sso login`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, run where an "
            f"instance or task role applies, or name access keys in {config.prefix}Credential"
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(
            f"cannot use the {config.side} credentials in {config.region} (asking STS which account they belong to; "
            f"set {config.prefix}AccountId to skip that): {_describe(exc)}"
        ) from None
    return str(identity["Account"])


def _check_role(session: boto3.Session, config: SideConfig) -> None:
    """Assume the role now: a wrong ARN or external id is a configuration error, reported once."""
    credentials = session.get_credentials()
    try:
        if credentials is not None:
            credentials.get_frozen_credentials()
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(f"cannot assume {config.prefix}RoleArn {config.role_arn}: {_describe(exc)}") from None


@dataclass(frozen=True, slots=True)
class SideSession:
    config: SideConfig
    session: boto3.Session
    account_id: str
    host: str
    partition: str

    def client(self, service: str) -> Any:
        make: Any = self.session.client  # typed per service literal by boto3-stubs
        return make(service, region_name=self.config.region, config=client_config())


def open_side(
    settings: Settings,
    side: SideName,
    *,
    secret_resolver: SecretResolver | None = None,
    session_factory: SessionFactory = boto3.Session,
) -> SideSession:
    config = SideConfig.from_settings(settings, side)
    registry = registry_for("0" * 12, config.region)  # validates the region before any AWS call
    session = side_session(config, secret_resolver=secret_resolver, session_factory=session_factory)
    if config.role_arn:
        _check_role(session, config)
    account = side_account(session, config)
    registry = registry_for(account, config.region)
    return SideSession(config, session, account, registry.host, registry.partition)
