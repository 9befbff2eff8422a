"""Everything one run needs, built once from Settings: credentials, clients and both catalogs.

The CLI, the lister Lambda and the Fargate copier all build their context here, so the cloud
and the local path resolve credentials and endpoints the same way. Each side comes from the
builder for its type (sides.registry_side, ecr.side.EcrSides); this module only composes them.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ecr_transfer.catalog import DestinationCatalog, SourceCatalog
from ecr_transfer.processes import RUN_PREFIX, private_tempdir
from ecr_transfer.ratelimit import RateLimiter, copy_gate
from ecr_transfer.references import ImageRef
from ecr_transfer.registry.authfiles import AuthFiles
from ecr_transfer.registry.client import CredentialLookup, RegistryClients
from ecr_transfer.registry.credentials import SecretResolver
from ecr_transfer.registry.trust import Trust
from ecr_transfer.settings import Settings
from ecr_transfer.sides import CopyGate, RunCredentials, SideBuilder, SideInputs, SideName, build_sides, registry_side
from ecr_transfer.skopeo import registries_conf_text

if TYPE_CHECKING:
    from ecr_transfer.ecr.sessions import SessionFactory


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
    limiter: RateLimiter | None = None
    """Pull budgets the registries announced (ratelimit-* headers): pulls there are paced one by one."""
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

    def push_target(self, target: str, registry: str) -> tuple[str, str]:
        """(reference, host) skopeo must push `target` (on `registry`) to.

        skopeo 1.9.3 applies a registries.conf `location` to pulls only; a push goes to the host
        named in the reference. So a push to a registry with an endpoint override names the endpoint.
        """
        endpoint = self.settings.registry_endpoints.get(registry)
        if not endpoint or not target.startswith(registry + "/"):
            return target, registry
        host = endpoint.split("://", 1)[-1].rstrip("/")
        return host + target[len(registry) :], host

    def rate_limited(self, registry: str) -> bool:
        """Whether `registry` announced a pull budget this run (each pull is then paced on its own)."""
        return self.limiter is not None and self.limiter.budget(registry) is not None

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


def registry_clients(
    settings: Settings, credentials: CredentialLookup, limiter: RateLimiter, trust: Trust
) -> RegistryClients:
    """The run's registry clients (the one place they are built): one per host, shared by both sides."""
    return RegistryClients(
        credentials,
        settings.insecure_registries,
        settings.registry_endpoints,
        pool_size=max(16, settings.concurrency),
        rate_limit_hook=limiter.observe,  # Docker Hub's ratelimit-remaining / 429 Retry-After
        trust=trust,
    )


def build_trust(settings: Settings, environ: Mapping[str, str] | None = None) -> Trust:
    return Trust(settings.registry_ca_bundles, environ=environ)


def build_context(
    settings: Settings,
    *,
    secret_resolver: SecretResolver | None = None,
    environ: Mapping[str, str] | None = None,
    session_factory: SessionFactory | None = None,
    rate_limiter: RateLimiter | None = None,
) -> TransferContext:
    """Two sides, each from the builder for its type, composed into one context."""
    env = os.environ if environ is None else environ
    kinds: dict[SideName, str] = {"source": settings.source_type, "destination": settings.dest_type}
    builders: dict[SideName, SideBuilder] = dict.fromkeys(kinds, registry_side)
    secrets = secret_resolver
    if "Amazon_ECR" in kinds.values():
        from ecr_transfer.ecr.side import EcrSides  # boto3 is imported only when a side is ECR

        ecr = EcrSides(session_factory)
        secrets = ecr.secrets(settings, secret_resolver, env)
        builders.update({name: ecr for name, kind in kinds.items() if kind == "Amazon_ECR"})
    limiter = rate_limiter or RateLimiter()
    credentials = RunCredentials(AuthFiles.load(env))
    trust = build_trust(settings, env)
    clients = registry_clients(settings, credentials, limiter, trust)
    sides = build_sides(builders, SideInputs(settings=settings, clients=clients, secrets=secrets))
    for side in sides.values():
        credentials.add(side)
    context = TransferContext(
        settings=settings,
        credentials=credentials,
        clients=clients,
        source=sides["source"].catalog,
        destination=sides["destination"].catalog,
        copy_gates=[copy_gate(limiter, clients), *(gate for side in sides.values() for gate in side.gates)],
        limiter=limiter,
        trust=trust,
    )
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
