"""Registry logins for ECR: GetAuthorizationToken, cached, refreshed before the 12-hour expiry.

The token is a base64 `AWS:<password>` pair; the password goes only into the copier's 0600
authfile and the registry client's Authorization header, never into argv, logs or payloads.
A copy can run for up to an hour (skopeo's timeout), so a token is replaced while it still has
REFRESH_MARGIN left: a copy never starts with a token that could expire half way.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ecr_transfer.errors import PermanentError, TransientError
from ecr_transfer.registry.credentials import Credential

TOKEN_LIFETIME = timedelta(hours=12)
REFRESH_MARGIN = timedelta(hours=2)
_THROTTLING = {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "ServiceUnavailable"}

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def decode_token(token: str) -> Credential:
    """`base64("AWS:<password>")` -> Credential("AWS", password)."""
    try:
        user, sep, password = base64.b64decode(token).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise PermanentError("GetAuthorizationToken returned a token that is not base64 user:password") from None
    if not sep or not user or not password:
        raise PermanentError("GetAuthorizationToken returned a token that is not base64 user:password")
    return Credential(user, password)


class EcrTokenCache:
    """The registry login of one ECR side, shared by every worker thread.

    `clock` is injectable so tests can move time past the refresh point.
    """

    def __init__(
        self,
        client: Any,
        *,
        registry: str = "",
        clock: Callable[[], datetime] = _now,
        margin: timedelta = REFRESH_MARGIN,
    ) -> None:
        self._client = client
        self.registry = registry
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._credential: Credential | None = None
        self._refresh_at: datetime | None = None
        self.expires_at: datetime | None = None
        self.fetches = 0
        """How many tokens were fetched (tests and the benchmark read it)."""

    def credential(self) -> Credential:
        """A token with at least `margin` of validity left, fetched at most once at a time."""
        with self._lock:
            now = self._clock()
            if self._credential is None or self._refresh_at is None or now >= self._refresh_at:
                self._fetch(now)
            assert self._credential is not None
            return self._credential

    def invalidate(self) -> None:
        """Forget the token (e.g. after the registry rejected it): the next use fetches a new one."""
        with self._lock:
            self._credential = None

    def _fetch(self, now: datetime) -> None:
        try:
            response = self._client.get_authorization_token()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            what = f"GetAuthorizationToken for {self.registry or 'ECR'} failed"
            message = f"{what}: {error.get('Code')}: {error.get('Message')}"
            raise (TransientError if error.get("Code") in _THROTTLING else PermanentError)(message) from None
        except BotoCoreError as exc:
            raise TransientError(f"GetAuthorizationToken for {self.registry or 'ECR'} failed: {exc}") from None
        data = response["authorizationData"][0]
        credential = decode_token(data["authorizationToken"])
        expires = data.get("expiresAt")
        if not isinstance(expires, datetime) or not now < expires <= now + TOKEN_LIFETIME:
            # A clock that disagrees with AWS (or an emulator) must not make us fetch a token per
            # request: ECR tokens live 12 hours from issue, measured by our own clock.
            expires = now + TOKEN_LIFETIME
        self._credential = credential
        self.expires_at = expires
        # Half the remaining life at most, so a short-lived token is not re-fetched on every use.
        self._refresh_at = expires - min(self._margin, (expires - now) / 2)
        self.fetches += 1
        log.info("new ECR login for %s, valid until %s", self.registry or "ECR", expires.isoformat())
