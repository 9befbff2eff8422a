"""The Amazon ECR side builder: what a run needs of an ECR source or destination.

Each ECR side gets its own session (default chain, AssumeRole, or keys from a secret), its
registry host derived from account + region + partition, a token cache for registry logins
(user `AWS`, refreshed as it nears expiry), PutImage pacing and an EcrCatalog. Secrets are
read from Secrets Manager in the deployment's home region when any side is ECR.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import boto3

from ecr_transfer.catalog import RegistryCatalog
from ecr_transfer.ecr.auth import EcrTokenCache
from ecr_transfer.ecr.catalog import EcrCatalog
from ecr_transfer.ecr.pacing import EcrPacing, client_config
from ecr_transfer.ecr.secrets import CachingResolver, SecretsManagerResolver
from ecr_transfer.ecr.sessions import SessionFactory, open_side
from ecr_transfer.errors import ConfigError
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.credentials import SecretResolver
from ecr_transfer.settings import Settings
from ecr_transfer.sides import Side, SideInputs, SideName

log = logging.getLogger(__name__)


def home_region(settings: Settings, environ: Mapping[str, str]) -> str:
    """Where this deployment runs, hence where its secrets live: AWS_REGION, else a side's region.

    A side whose credentials come from a secret is the *other* partition, so the side that uses
    the default chain is preferred.
    """
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name]
    candidates = [
        (settings.src_credential, settings.src_region if settings.source_type == "Amazon_ECR" else None),
        (settings.dest_credential, settings.dest_region if settings.dest_type == "Amazon_ECR" else None),
    ]
    for credential, region in candidates:
        if region and not credential:
            return region
    for _, region in candidates:
        if region:
            return region
    raise ConfigError("cannot tell which region holds the secrets: set AWS_REGION")


class EcrSides:
    """Builds ECR sides (`sides.SideBuilder`) with one way of making AWS sessions."""

    def __init__(self, session_factory: SessionFactory | None = None) -> None:
        self._factory: SessionFactory = session_factory or boto3.Session

    def secrets(self, settings: Settings, given: SecretResolver | None, environ: Mapping[str, str]) -> SecretResolver:
        """The run's secret reader: `given`, else Secrets Manager in the home region; each secret read once."""
        if given is not None:
            return CachingResolver(given)
        region = home_region(settings, environ)

        def client(secret_region: str) -> Any:
            return self._factory(region_name=secret_region).client("secretsmanager", config=client_config())

        return CachingResolver(SecretsManagerResolver(client, region))

    def __call__(self, side: SideName, inputs: SideInputs) -> Side:
        settings = inputs.settings
        opened = open_side(settings, side, secret_resolver=inputs.secrets, session_factory=self._factory)
        client = opened.client("ecr")
        # A list entry on another registry (a public base image next to the ECR repositories) is
        # looked up like any registry's.
        fallback = RegistryCatalog(inputs.clients, concurrency=inputs.lookups) if side == "source" else None
        catalog = EcrCatalog(
            client,
            registry=opened.host,
            registry_id=opened.account_id,
            repository_settings=settings.repository,
            pacing=EcrPacing(),
            fallback=fallback,
            concurrency=min(8, max(2, settings.concurrency)),
        )
        log.info("%s: Amazon ECR %s (%s)", side, opened.host, opened.partition)

        def pace_push(_source: ImageRef, destination: ImageRef) -> None:
            # PutImage is paced per registry, whichever side of the run the registry is.
            if destination.registry == opened.host:
                catalog.before_push(destination)

        return Side(
            catalog=catalog,
            logins={},
            tokens={opened.host: EcrTokenCache(client, registry=opened.host).credential},
            gates=(pace_push,),
        )
