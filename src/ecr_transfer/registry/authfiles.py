"""Logins from the standard auth files, credential helpers included, looked up per registry host.

Files are read in the order skopeo and podman use (REGISTRY_AUTH_FILE, then
$XDG_RUNTIME_DIR/containers/auth.json, then the docker config), so a `podman login` or
`docker login` done by the user just works. In each file, as docker does, `credHelpers[host]`
wins, then `credsStore`, then the `auths` entry. A helper is run as docker runs it
(`docker-credential-NAME get`, the server on stdin, JSON on stdout) once per host and run, and
only for hosts the run talks to: a desktop keychain is not asked about every login it holds.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ecr_transfer import envvars
from ecr_transfer.errors import ConfigError, PermanentError
from ecr_transfer.references import DOCKER_HUB
from ecr_transfer.registry.credentials import Credential, normalize_host

HELPER_PREFIX = "docker-credential-"
HELPER_TIMEOUT = 60.0
_HUB_SERVER = "https://index.docker.io/v1/"
"""The server name docker hands helpers for Docker Hub (its logins are stored under it)."""
_NOT_FOUND = "credentials not found"


def auth_file_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    paths: list[Path] = []
    if env.get(envvars.REGISTRY_AUTH_FILE):
        paths.append(Path(env[envvars.REGISTRY_AUTH_FILE]))
    if env.get(envvars.XDG_RUNTIME_DIR):
        paths.append(Path(env[envvars.XDG_RUNTIME_DIR]) / "containers" / "auth.json")
    docker_dir = Path(env[envvars.DOCKER_CONFIG]) if env.get(envvars.DOCKER_CONFIG) else Path.home() / ".docker"
    paths.append(docker_dir / "config.json")
    return paths


@dataclass(frozen=True, slots=True)
class AuthFile:
    path: Path
    auths: Mapping[str, Credential] = field(default_factory=dict)
    helpers: Mapping[str, str] = field(default_factory=dict)
    """credHelpers: host -> helper name (`ecr-login` runs docker-credential-ecr-login)."""
    store: str | None = None
    """credsStore: the helper holding every other login of this file."""


def read_auth_file(path: Path) -> AuthFile | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read registry auth file: {exc}", source=str(path)) from None
    if not isinstance(doc, dict):
        raise ConfigError("registry auth file is not a JSON object", source=str(path))
    auths: dict[str, Credential] = {}
    for key, entry in (doc.get("auths") or {}).items():
        host = normalize_host(key)
        if host in auths or not isinstance(entry, dict) or not entry.get("auth"):
            continue
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"entry {key!r} has an invalid auth value", source=str(path)) from None
        auths[host] = Credential(user, password, origin=f"auth file {path}")
    helpers = {normalize_host(k): str(v) for k, v in (doc.get("credHelpers") or {}).items() if v}
    store = doc.get("credsStore") or None
    return AuthFile(path, auths, helpers, str(store) if store else None)


def run_helper(name: str, host: str, why: str) -> Credential | None:
    """`docker-credential-NAME get` for host; None when the helper holds nothing for it."""
    program = HELPER_PREFIX + name
    server = _HUB_SERVER if host == DOCKER_HUB else host
    try:
        proc = subprocess.run(
            [program, "get"], input=server, capture_output=True, text=True, timeout=HELPER_TIMEOUT, check=False
        )
    except FileNotFoundError:
        raise PermanentError(f"{host}: credential helper {program} ({why}) is not installed or not on PATH") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PermanentError(f"{host}: credential helper {program} ({why}) failed: {exc}") from None
    output = (proc.stdout or "").strip()
    if proc.returncode != 0:
        if _NOT_FOUND in output.lower() or _NOT_FOUND in (proc.stderr or "").lower():
            return None
        detail = (proc.stderr or output).strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise PermanentError(f"{host}: credential helper {program} ({why}) failed: {detail[0]}")
    try:
        doc = json.loads(output)
        username, secret = str(doc["Username"]), str(doc["Secret"])
    except (ValueError, KeyError, TypeError):
        raise PermanentError(f"{host}: credential helper {program} ({why}) did not answer JSON with a Secret") from None
    if username == "<token>":
        # An identity token is an OAuth refresh token for docker's own token exchange.
        raise PermanentError(
            f"{host}: credential helper {program} ({why}) holds an identity token, which ecr-transfer cannot use; "
            "log in with a username and password or token instead"
        )
    return Credential(username, secret, origin=f"credential helper {program} ({why})")


class AuthFiles:
    """Registry host -> login from the auth files, asking credential helpers lazily (thread-safe)."""

    def __init__(self, files: list[AuthFile]) -> None:
        self._files = files
        self._found: dict[str, Credential | PermanentError | None] = {}
        """Helper failures too: a broken helper fails each image of its host at once, not by a rerun."""
        self._lock = threading.Lock()

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> AuthFiles:
        return cls([f for f in (read_auth_file(p) for p in auth_file_candidates(environ)) if f is not None])

    def static(self) -> dict[str, Credential]:
        """The logins written in the files themselves (no helper run), earlier files winning."""
        found: dict[str, Credential] = {}
        for auth_file in self._files:
            for host, credential in auth_file.auths.items():
                found.setdefault(host, credential)
        return found

    def __call__(self, registry: str) -> Credential | None:
        with self._lock:
            if registry not in self._found:
                try:
                    self._found[registry] = self._lookup(registry)
                except PermanentError as exc:
                    self._found[registry] = exc
            found = self._found[registry]
        if isinstance(found, PermanentError):
            raise PermanentError(str(found))
        return found

    def _lookup(self, registry: str) -> Credential | None:
        for auth_file in self._files:
            helper = auth_file.helpers.get(registry)
            if helper:
                found = run_helper(helper, registry, f"credHelpers in {auth_file.path}")
                if found is not None:
                    return found
            if auth_file.store:
                found = run_helper(auth_file.store, registry, f"credsStore in {auth_file.path}")
                if found is not None:
                    return found
            if registry in auth_file.auths:
                return auth_file.auths[registry]
        return None


def load_auth_files(environ: Mapping[str, str] | None = None) -> dict[str, Credential]:
    """Credentials by registry host written in the standard auth files; earlier files win."""
    return AuthFiles.load(environ).static()
