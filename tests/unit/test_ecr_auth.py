"""ECR registry logins: decoded, cached, refreshed before the 12-hour expiry, one fetch at a time."""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ecr_transfer.catalog import RegistryCatalog
from ecr_transfer.ecr.auth import EcrTokenCache, decode_token
from ecr_transfer.errors import PermanentError, TransientError
from ecr_transfer.registry.credentials import Credential
from ecr_transfer.sides import RunCredentials, Side
from support.fakes import NoManifests

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class FakeEcr:
    """GetAuthorizationToken answering `AWS:token-<n>`, valid 12 hours from the clock's now."""

    def __init__(self, clock: Clock, *, delay: float = 0.0, lifetime: timedelta | None = timedelta(hours=12)) -> None:
        self.clock = clock
        self.calls = 0
        self.delay = delay
        self.lifetime = lifetime
        self.error: ClientError | None = None

    def get_authorization_token(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        time.sleep(self.delay)
        self.calls += 1
        token = base64.b64encode(f"AWS:token-{self.calls}".encode()).decode()
        expires = self.clock.now + self.lifetime if self.lifetime else datetime(2015, 1, 1, tzinfo=UTC)
        return {"authorizationData": [{"authorizationToken": token, "expiresAt": expires, "proxyEndpoint": "x"}]}


def test_an_ecr_token_decodes_to_user_and_password_or_is_refused() -> None:
    assert decode_token(base64.b64encode(b"AWS:abc:def").decode()) == Credential("AWS", "abc:def")
    with pytest.raises(PermanentError, match="not base64 user:password"):
        decode_token(base64.b64encode(b"no-colon").decode())
    with pytest.raises(PermanentError, match="not base64 user:password"):
        decode_token("%%%")


def test_token_is_reused_then_refreshed_before_expiry() -> None:
    clock = Clock()
    ecr = FakeEcr(clock)
    cache = EcrTokenCache(ecr, registry=HOST, clock=clock)

    assert cache.credential() == Credential("AWS", "token-1")
    clock.now = T0 + timedelta(hours=9, minutes=59)
    assert cache.credential().password == "token-1"
    # 2 hours before expiry: a copy started now (skopeo's timeout is 1 hour) must not outlive its token.
    clock.now = T0 + timedelta(hours=10, minutes=1)
    assert cache.credential().password == "token-2"
    assert cache.expires_at == clock.now + timedelta(hours=12)
    assert ecr.calls == 2


def test_expiry_in_the_past_does_not_mean_a_fetch_per_use() -> None:
    # moto (and a skewed clock) report an expiresAt that is already over.
    clock = Clock()
    ecr = FakeEcr(clock, lifetime=None)
    cache = EcrTokenCache(ecr, clock=clock)
    for _ in range(5):
        cache.credential()
    assert ecr.calls == 1
    assert cache.expires_at == T0 + timedelta(hours=12)


def test_short_lived_token_is_refreshed_half_way() -> None:
    clock = Clock()
    ecr = FakeEcr(clock, lifetime=timedelta(hours=1))
    cache = EcrTokenCache(ecr, clock=clock)
    cache.credential()
    clock.now = T0 + timedelta(minutes=29)
    cache.credential()
    assert ecr.calls == 1
    clock.now = T0 + timedelta(minutes=31)
    cache.credential()
    assert ecr.calls == 2


def test_concurrent_workers_share_one_fetch() -> None:
    clock = Clock()
    ecr = FakeEcr(clock, delay=0.05)
    cache = EcrTokenCache(ecr, clock=clock)
    results: list[Credential] = []
    threads = [threading.Thread(target=lambda: results.append(cache.credential())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ecr.calls == 1
    assert set(results) == {Credential("AWS", "token-1")}


def test_token_errors_are_transient_when_throttled_and_permanent_when_denied() -> None:
    clock = Clock()
    ecr = FakeEcr(clock)
    cache = EcrTokenCache(ecr, registry=HOST, clock=clock)
    ecr.error = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetAuthorizationToken"
    )
    with pytest.raises(TransientError, match=f"GetAuthorizationToken for {HOST} failed: ThrottlingException"):
        cache.credential()
    ecr.error = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetAuthorizationToken")
    with pytest.raises(PermanentError) as raised:
        cache.credential()
    assert str(raised.value) == f"GetAuthorizationToken for {HOST} failed: AccessDeniedException: no"


def test_lookup_answers_ecr_hosts_with_fresh_tokens_and_others_statically() -> None:
    clock = Clock()
    ecr = FakeEcr(clock)
    lookup = RunCredentials({"quay.io": Credential("robot", "pw")}.get)
    catalog = RegistryCatalog(NoManifests())  # type: ignore[arg-type]
    lookup.add(Side(catalog=catalog, logins={}, tokens={HOST: EcrTokenCache(ecr, clock=clock).credential}))
    assert lookup("quay.io") == Credential("robot", "pw")
    assert lookup("docker.io") is None
    assert lookup(HOST) == Credential("AWS", "token-1")
    clock.now += timedelta(hours=11)
    assert lookup(HOST) == Credential("AWS", "token-2")  # a long run gets the new token
    assert "token" not in repr(lookup(HOST))  # never printed by accident


def test_an_ecr_token_from_moto_is_the_accounts_auth_token() -> None:
    with mock_aws():
        client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="t")
        assert EcrTokenCache(client).credential() == Credential("AWS", "123456789012-auth-token")
