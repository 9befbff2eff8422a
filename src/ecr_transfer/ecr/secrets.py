"""The Secrets Manager `SecretResolver`: secret name or ARN -> secret text.

The secret text is returned to the caller only: it is never logged and error messages name
the secret, never its value. A full ARN is read in the ARN's own region (and so partition);
a plain name in the deployment's home region.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_transfer.errors import ConfigError

ClientFactory = Callable[[str], Any]
"""Region -> a Secrets Manager client for that region."""

_HINTS = {
    "ResourceNotFoundException": "no such secret",
    "AccessDeniedException": "access denied (the role needs secretsmanager:GetSecretValue, and kms:Decrypt "
    "for a customer-managed key)",
    "DecryptionFailure": "cannot decrypt it with its KMS key",
    "InvalidRequestException": "the secret is not usable (deleted or scheduled for deletion?)",
}


def secret_region(name: str, default_region: str) -> str:
    """`arn:aws-cn:secretsmanager:cn-north-1:...:secret:x` lives in cn-north-1; a name in the default."""
    parts = name.split(":")
    if len(parts) >= 7 and parts[0] == "arn" and parts[2] == "secretsmanager" and parts[3]:
        return parts[3]
    return default_region


class SecretsManagerResolver:
    """Reads each secret once per run (a run asks for srcCredential/destCredential several times)."""

    def __init__(self, client_factory: ClientFactory, default_region: str) -> None:
        self._client_factory = client_factory
        self._default_region = default_region
        self._clients: dict[str, Any] = {}
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def _client(self, region: str) -> Any:
        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = self._client_factory(region)
        return client

    def __call__(self, name: str) -> str:
        with self._lock:
            if name in self._cache:
                return self._cache[name]
            region = secret_region(name, self._default_region)
            try:
                response = self._client(region).get_secret_value(SecretId=name)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "Error")
                hint = _HINTS.get(code, exc.response.get("Error", {}).get("Message", ""))
                raise ConfigError(f"cannot read the secret in {region}: {code}: {hint}", source=name) from None
            except BotoCoreError as exc:
                raise ConfigError(f"cannot read the secret in {region}: {exc}", source=name) from None
            text = response.get("SecretString")
            if text is None:
                binary = response.get("SecretBinary")
                if binary is None:
                    raise ConfigError("the secret has no value", source=name)
                text = bytes(binary).decode("utf-8", errors="replace")
            self._cache[name] = str(text)
            return self._cache[name]


class CachingResolver:
    """Memoizes any SecretResolver, so sessions and registry logins read a secret once."""

    def __init__(self, resolver: Callable[[str], str]) -> None:
        self._resolver = resolver
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        with self._lock:
            if name not in self._cache:
                self._cache[name] = self._resolver(name)
            return self._cache[name]
