"""The TransferContext of a run with Amazon ECR on one or both sides.

Each ECR side gets its own session (default chain, AssumeRole, or keys from a secret), its
registry host derived from account + region + partition, a token cache for registry logins,
API pacing and an EcrCatalog. The credential lookup answers those hosts with a fresh token
(user `AWS`) and every other host from the auth files and srcCredential/destCredential.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3

from ecr_transfer.catalog import DestinationCatalog, RegistryCatalog, SourceCatalog
from ecr_transfer.context import (
    StaticCredentials,
    TransferContext,
    attach_registries_conf,
    build_credentials,
    build_trust,
)
from ecr_transfer.ecr.auth import EcrTokenCache
from ecr_transfer.ecr.catalog import EcrCatalog
from ecr_transfer.ecr.pacing import EcrPacing, client_config
from ecr_transfer.ecr.secrets import CachingResolver, SecretsManagerResolver
from ecr_transfer.ecr.sessions import SessionFactory, SideName, SideSession, open_side
from ecr_transfer.errors import ConfigError
from ecr_transfer.ratelimit import RateLimiter, copy_gate
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.client import RegistryClients
from ecr_transfer.registry.credentials import Credential, SecretResolver
from ecr_transfer.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EcrSide:
    """One ECR side, ready to use."""

    session: SideSession
    tokens: EcrTokenCache
    catalog: EcrCatalog
    pacing: EcrPacing

    @property
    def host(self) -> str:
        return self.session.host


class EcrCredentials:
    """Registry host -> credential: fresh ECR tokens for the ECR sides, static logins otherwise."""

    def __init__(self, static: StaticCredentials, tokens: Mapping[str, EcrTokenCache] | None = None) -> None:
        self._static = static
        self._tokens = dict(tokens or {})

    def register(self, host: str, tokens: EcrTokenCache) -> None:
        self._tokens[host] = tokens

    def __call__(self, registry: str) -> Credential | None:
        cache = self._tokens.get(registry)
        if cache is not None:
            return cache.credential()
        return self._static(registry)


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


def default_secret_resolver(settings: Settings, environ: Mapping[str, str], factory: SessionFactory) -> SecretResolver:
    region = home_region(settings, environ)

    def client(secret_region: str) -> Any:
        return factory(region_name=secret_region).client("secretsmanager", config=client_config())

    return SecretsManagerResolver(client, region)


def open_ecr_side(
    settings: Settings,
    side: SideName,
    *,
    secret_resolver: SecretResolver,
    session_factory: SessionFactory,
    fallback: RegistryCatalog | None = None,
) -> EcrSide:
    opened = open_side(settings, side, secret_resolver=secret_resolver, session_factory=session_factory)
    client = opened.client("ecr")
    pacing = EcrPacing()
    catalog = EcrCatalog(
        client,
        registry=opened.host,
        registry_id=opened.account_id,
        repository_settings=settings.repository,
        pacing=pacing,
        fallback=fallback,
        concurrency=min(8, max(2, settings.concurrency)),
    )
    log.info("%s: Amazon ECR %s (%s)", side, opened.host, opened.partition)
    return EcrSide(opened, EcrTokenCache(client, registry=opened.host), catalog, pacing)


def build_ecr_context(
    settings: Settings,
    *,
    secret_resolver: SecretResolver | None = None,
    environ: Mapping[str, str] | None = None,
    session_factory: SessionFactory | None = None,
    rate_limiter: RateLimiter | None = None,
) -> TransferContext:
    env = os.environ if environ is None else environ
    factory: SessionFactory = session_factory or boto3.Session
    resolver = CachingResolver(secret_resolver or default_secret_resolver(settings, env, factory))
    limiter = rate_limiter or RateLimiter()
    dest_registry = settings.dest_registry if settings.dest_type == "Registry" else None
    static = build_credentials(settings, dest_registry, resolver, env)

    credentials = EcrCredentials(static)
    trust = build_trust(settings, env)
    clients = RegistryClients(
        credentials,
        settings.insecure_registries,
        settings.registry_endpoints,
        pool_size=max(16, settings.concurrency),
        rate_limit_hook=limiter.observe,
        trust=trust,
    )
    plain = RegistryCatalog(clients, concurrency=max(16, settings.concurrency))

    source: SourceCatalog
    destination: DestinationCatalog
    sides: list[EcrSide] = []
    if settings.source_type == "Amazon_ECR":
        src = open_ecr_side(settings, "source", secret_resolver=resolver, session_factory=factory, fallback=plain)
        sides.append(src)
        source = src.catalog
    else:
        source = plain
    if settings.dest_type == "Amazon_ECR":
        dst = open_ecr_side(settings, "destination", secret_resolver=resolver, session_factory=factory)
        sides.append(dst)
        destination = dst.catalog
    else:
        destination = RegistryCatalog(clients, registry=dest_registry, concurrency=max(16, settings.concurrency))
    for side in sides:
        credentials.register(side.host, side.tokens)

    def pace_push(_src: ImageRef, dst_ref: ImageRef) -> None:
        for side in sides:
            if side.host == dst_ref.registry:
                side.catalog.before_push(dst_ref)

    context = TransferContext(settings, credentials, clients, source, destination, trust=trust)
    context.copy_gates += [copy_gate(limiter, clients), pace_push]
    attach_registries_conf(context)
    return context
