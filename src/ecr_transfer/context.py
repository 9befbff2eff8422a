"""Everything one run needs, built once from Settings: credentials, clients and both catalogs.

The CLI, the lister Lambda and the Fargate copier all build their context here, so the cloud
and the local path resolve credentials and endpoints the same way.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ecr_transfer.catalog import DestinationCatalog, RegistryCatalog, SourceCatalog
from ecr_transfer.errors import ConfigError
from ecr_transfer.processes import RUN_PREFIX, private_tempdir
from ecr_transfer.ratelimit import RateLimiter, copy_gate
from ecr_transfer.references import ImageRef, parse_image_list
from ecr_transfer.registry.authfiles import AuthFiles
from ecr_transfer.registry.client import CredentialLookup, RegistryClients
from ecr_transfer.registry.credentials import Credential, SecretResolver, resolve_secret
from ecr_transfer.registry.trust import Trust
from ecr_transfer.settings import Settings
from ecr_transfer.skopeo import registries_conf_text


class StaticCredentials:
    """The secrets named by srcCredential/destCredential, over the auth files' logins (and helpers)."""

    def __init__(self, base: Mapping[str, Credential] | CredentialLookup, overrides: Mapping[str, Credential]) -> None:
        self._base: CredentialLookup = base.get if isinstance(base, Mapping) else base
        self._overrides = dict(overrides)

    def __call__(self, registry: str) -> Credential | None:
        found = self._overrides.get(registry)
        return found if found is not None else self._base(registry)


CopyGate = Callable[[ImageRef, ImageRef], None]
"""Called before each copy attempt with (source, destination); may wait (rate limits, pacing) or raise."""


@dataclass
class TransferContext:
    settings: Settings
    credentials: CredentialLookup
    clients: RegistryClients
    source: SourceCatalog
    destination: DestinationCatalog
    registries_conf: Path | None = None
    _prepared: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workdir: str | None = None
    copy_gates: list[CopyGate] = field(default_factory=list)
    trust: Trust = field(default_factory=Trust)

    def before_copy(self, source: ImageRef, destination: ImageRef) -> None:
        for gate in self.copy_gates:
            gate(source, destination)

    def prepare_repository(self, repository: str) -> None:
        """Create/ready a destination repository once per run, whichever worker gets there first."""
        with self._lock:
            if repository in self._prepared:
                return
            self.destination.prepare([repository])
            self._prepared.add(repository)

    def is_insecure(self, registry: str) -> bool:
        return registry in self.settings.insecure_registries

    def cert_dir(self, registry: str, *connected: str) -> Path | None:
        """skopeo's --*-cert-dir for a registry (and the hosts it is reached at), None for the defaults."""
        endpoint = self.settings.registry_endpoints.get(registry)
        hosts = [registry, *connected] + ([endpoint.split("://", 1)[-1].rstrip("/")] if endpoint else [])
        return self.trust.cert_dir(*dict.fromkeys(hosts))

    def close(self) -> None:
        self.trust.close()
        if self._workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


def _source_hosts(settings: Settings) -> set[str]:
    if settings.src_list != "SELECTED" or settings.source_type != "Public":
        return set()
    return {ref.registry for ref in parse_image_list(settings.src_image_list)}


def build_credentials(
    settings: Settings,
    dest_registry: str | None,
    secret_resolver: SecretResolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> StaticCredentials:
    """srcCredential applies to the registry named in the secret, else to every source registry."""
    overrides: dict[str, Credential] = {}
    problems: list[str] = []
    for spec, hosts in (
        (settings.src_credential, _source_hosts(settings)),
        (settings.dest_credential, {dest_registry} if dest_registry else set()),
    ):
        if not spec:
            continue
        try:
            doc = resolve_secret(spec, secret_resolver)
        except ConfigError as exc:
            problems.extend(exc.args)
            continue
        if doc.credential is None:
            continue  # AWS keys: the ECR side turns them into registry tokens.
        for host in {doc.registry} if doc.registry else hosts:
            overrides[host] = doc.credential
    if problems:
        raise ConfigError(problems)
    return StaticCredentials(AuthFiles.load(environ), overrides)


def build_trust(settings: Settings, environ: Mapping[str, str] | None = None) -> Trust:
    return Trust(settings.registry_ca_bundles, environ=environ)


def build_context(
    settings: Settings,
    *,
    secret_resolver: SecretResolver | None = None,
    environ: Mapping[str, str] | None = None,
) -> TransferContext:
    if settings.source_type == "Amazon_ECR" or settings.dest_type == "Amazon_ECR":
        from ecr_transfer.ecr.context import build_ecr_context

        return build_ecr_context(settings, secret_resolver=secret_resolver, environ=environ)
    credentials = build_credentials(settings, settings.dest_registry, secret_resolver, environ)
    trust = build_trust(settings, environ)
    limiter = RateLimiter()  # Docker Hub's ratelimit-remaining / 429 Retry-After
    clients = RegistryClients(
        credentials,
        settings.insecure_registries,
        settings.registry_endpoints,
        pool_size=max(16, settings.concurrency),
        rate_limit_hook=limiter.observe,
        trust=trust,
    )
    context = TransferContext(
        settings,
        credentials,
        clients,
        source=RegistryCatalog(clients, concurrency=max(16, settings.concurrency)),
        destination=RegistryCatalog(
            clients, registry=settings.dest_registry, concurrency=max(16, settings.concurrency)
        ),
        trust=trust,
    )
    context.copy_gates.append(copy_gate(limiter, clients))
    attach_registries_conf(context)
    return context


def attach_registries_conf(context: TransferContext) -> None:
    """Endpoint overrides reach skopeo through a private registries.conf."""
    endpoints = context.settings.registry_endpoints
    if not endpoints:
        return
    context._workdir = private_tempdir(RUN_PREFIX)
    path = Path(context._workdir) / "registries.conf"
    path.write_text(registries_conf_text(endpoints, context.settings.insecure_registries), encoding="utf-8")
    context.registries_conf = path
