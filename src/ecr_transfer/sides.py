"""One side of a transfer (source or destination) as a run needs it, and the plain-registry builder.

A side is built by one builder, chosen by the side's type: `registry_side` here for any OCI
registry, `ecr.side.EcrSides` for Amazon ECR. Each returns the same `Side`: the catalog the
planner and copier ask, the registry logins and token sources its registries are reached
with, and the gates its registries put before each copy. `context.build_context` only
composes two sides, so every mix (ECR -> registry, registry -> ECR, ...) takes the same path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ecr_transfer.catalog import DestinationCatalog, RegistryCatalog, SourceCatalog
from ecr_transfer.errors import ConfigError
from ecr_transfer.references import ImageRef, parse_image_list
from ecr_transfer.registry.client import CredentialLookup, RegistryClients
from ecr_transfer.registry.credentials import Credential, SecretResolver, resolve_secret
from ecr_transfer.settings import Settings

SideName = Literal["source", "destination"]
CopyGate = Callable[[ImageRef, ImageRef], None]
"""Called before each copy attempt with (source, destination); may wait (rate limits, pacing) or raise."""
TokenSource = Callable[[], Credential]
"""A credential fetched fresh at each use (an ECR token, valid 12 hours)."""


class Catalog(SourceCatalog, DestinationCatalog, Protocol):
    """Both catalogs serve either side: an ECR source lists, an ECR destination creates repositories."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Side:
    """What a run needs of one side."""

    catalog: Catalog
    logins: Mapping[str, Credential]
    """Registry host -> the login this side's secret (srcCredential/destCredential) holds for it."""
    tokens: Mapping[str, TokenSource]
    """Registry host -> its fresh credential (ECR registries)."""
    gates: Sequence[CopyGate] = ()
    """Waits this side's registries put before each copy (ECR's PutImage pacing)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SideInputs:
    """What every side builder is given: the run's settings, registry clients and secret reader."""

    settings: Settings
    clients: RegistryClients
    secrets: SecretResolver | None
    """None: only file:PATH and env:VAR secrets (no AWS on either side)."""

    @property
    def lookups(self) -> int:
        """Manifest HEADs a plain registry catalog runs at once."""
        return max(16, self.settings.concurrency)


SideBuilder = Callable[[SideName, SideInputs], Side]


class RunCredentials:
    """Registry host -> credential for the whole run: fresh tokens, then side logins, then the auth files.

    The registry clients are built with this lookup before the sides exist (the sides' catalogs
    use the clients), so the sides' logins and tokens are added once they are built.
    """

    def __init__(self, auth_files: CredentialLookup) -> None:
        self._auth_files = auth_files
        """Logins and credential helpers of the auth files (registry.authfiles.AuthFiles)."""
        self._logins: dict[str, Credential] = {}
        self._tokens: dict[str, TokenSource] = {}

    def add(self, side: Side) -> None:
        self._logins.update(side.logins)
        self._tokens.update(side.tokens)

    def __call__(self, registry: str) -> Credential | None:
        token = self._tokens.get(registry)
        if token is not None:
            return token()
        login = self._logins.get(registry)
        return login if login is not None else self._auth_files(registry)


def side_secret(settings: Settings, side: SideName) -> str | None:
    """The secret spec a side's credentials come from (srcCredential / destCredential)."""
    return settings.src_credential if side == "source" else settings.dest_credential


def _registry_hosts(settings: Settings, side: SideName) -> set[str]:
    """Hosts a plain side's login applies to when its secret names no registry."""
    if side == "destination":
        return {settings.dest_registry} if settings.dest_registry else set()
    if settings.src_list != "SELECTED":
        return set()
    return {ref.registry for ref in parse_image_list(settings.src_image_list)}


def registry_logins(settings: Settings, side: SideName, secrets: SecretResolver | None) -> dict[str, Credential]:
    """srcCredential applies to the registry named in the secret, else to every source registry."""
    spec = side_secret(settings, side)
    if not spec:
        return {}
    doc = resolve_secret(spec, secrets)
    if doc.credential is None:
        return {}  # AWS keys: only an ECR side can use them (it turns them into registry tokens)
    return dict.fromkeys({doc.registry} if doc.registry else _registry_hosts(settings, side), doc.credential)


def registry_side(side: SideName, inputs: SideInputs) -> Side:
    """Any OCI/distribution registry: manifest HEADs and tag lists through the run's clients."""
    registry = inputs.settings.dest_registry if side == "destination" else None
    return Side(
        catalog=RegistryCatalog(inputs.clients, registry=registry, concurrency=inputs.lookups),
        logins=registry_logins(inputs.settings, side, inputs.secrets),
        tokens={},
    )


def build_sides(builders: Mapping[SideName, SideBuilder], inputs: SideInputs) -> dict[SideName, Side]:
    """Both sides, every configuration problem of either reported together (fixed in one go)."""
    sides: dict[SideName, Side] = {}
    problems: list[str] = []
    for name, builder in builders.items():
        try:
            sides[name] = builder(name, inputs)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    return sides
