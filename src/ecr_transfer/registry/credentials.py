"""Registry credentials: srcCredential/destCredential secrets and skopeo's private authfile.

Credential specs in settings name where a secret lives, never the secret itself, so settings
files and state-machine payloads stay clean. The standard auth files are read in authfiles.py.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ecr_transfer.errors import ConfigError
from ecr_transfer.processes import AUTH_PREFIX, private_tempdir
from ecr_transfer.references import DOCKER_HUB

_HUB_KEYS = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


@dataclass(frozen=True, slots=True)
class Credential:
    """Username/password (or token as password) for one registry. repr never shows the secret."""

    username: str
    password: str = field(repr=False)
    origin: str = field(default="the configured login", compare=False)
    """Where it came from, for error messages (`auth file ~/.docker/config.json`); never the secret."""

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


@dataclass(frozen=True, slots=True)
class SecretDocument:
    """A resolved credential secret: registry login and/or AWS keys (for ECR in another partition)."""

    credential: Credential | None = None
    registry: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)


def normalize_host(key: str) -> str:
    """Auth-file keys may be URLs (`https://index.docker.io/v1/`); reduce them to host[:port]."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in _HUB_KEYS else host


def parse_secret(text: str, name: str) -> SecretDocument:
    """The JSON formats users keep in secrets: DTH's AWS key pair, or a registry login."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError("secret is not a JSON object", source=name) from None
    if not isinstance(doc, dict):
        raise ConfigError("secret is not a JSON object", source=name)
    registry = normalize_host(doc["registry"]) if doc.get("registry") else None
    if "access_key_id" in doc or "secret_access_key" in doc:
        missing = [k for k in ("access_key_id", "secret_access_key") if not doc.get(k)]
        if missing:
            raise ConfigError(f"secret is missing {', '.join(missing)}", source=name)
        return SecretDocument(
            aws_access_key_id=str(doc["access_key_id"]),
            aws_secret_access_key=str(doc["secret_access_key"]),
            registry=registry,
        )
    if doc.get("token") and not doc.get("password"):
        user = str(doc.get("username") or "token")
        return SecretDocument(Credential(user, str(doc["token"]), origin=f"the secret {name}"), registry)
    missing = [k for k in ("username", "password") if not doc.get(k)]
    if missing:
        raise ConfigError(
            f"secret is missing {', '.join(missing)} (expected username/password, token, "
            "or access_key_id/secret_access_key)",
            source=name,
        )
    credential = Credential(str(doc["username"]), str(doc["password"]), origin=f"the secret {name}")
    return SecretDocument(credential, registry)


SecretResolver = Callable[[str], str]
"""Returns the secret text for a name (Secrets Manager in the cloud)."""


def resolve_secret(spec: str, secret_resolver: SecretResolver | None = None) -> SecretDocument:
    """`file:PATH` or `env:VAR` (JSON), or a secret name looked up through `secret_resolver`."""
    if spec.startswith("file:"):
        path = spec[5:]
        try:
            return parse_secret(Path(path).read_text(encoding="utf-8"), spec)
        except OSError as exc:
            raise ConfigError(f"cannot read credential file: {exc.strerror}", source=spec) from None
    if spec.startswith("env:"):
        var = spec[4:]
        if var not in os.environ:
            raise ConfigError(f"environment variable {var} is not set", source=spec)
        return parse_secret(os.environ[var], spec)
    if secret_resolver is None:
        raise ConfigError(
            "a secret name needs AWS Secrets Manager; use file:PATH or env:VAR for local credentials",
            source=spec,
        )
    return parse_secret(secret_resolver(spec), spec)


@contextmanager
def temporary_authfile(entries: Mapping[str, Credential]) -> Iterator[Path]:
    """An auth.json for skopeo in a private directory (0700, file 0600), removed afterwards.

    Credentials never go on skopeo's command line, where any local user could read them. A
    process killed with SIGKILL cannot remove it: the directory name carries the pid, so the
    next run removes it (processes.remove_stale_tempdirs).
    """
    directory = private_tempdir(AUTH_PREFIX)
    try:
        path = Path(directory) / "auth.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        doc = {"auths": {host: {"auth": cred.basic()} for host, cred in entries.items()}}
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
