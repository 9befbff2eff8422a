"""Amazon ECR for integration tests: moto_server for the control plane, a real registry for bytes.

`EcrEmulator` puts a proxy in front of a docker-registry and makes the pair behave like one ECR
registry (account + region): writes to a repository that does not exist in moto fail with ECR's
`NAME_UNKNOWN`, pushing an existing tag of an IMMUTABLE repository fails with ECR's
`TAG_INVALID` message, and every manifest pushed is registered in moto with its real bytes and
sha256 digest, so DescribeImages and the registry always agree. The registry's htpasswd login is
`AWS` / moto's token password, so only a GetAuthorizationToken login gets in. The OCI 1.1
referrers API, which ECR has and distribution 2.8 lacks, is answered from moto's copy of every
pushed manifest (ecr_referrers).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.exceptions import ClientError

from ecr_transfer.ecr.hosts import registry_host
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.processes import stop_process
from ecr_transfer.settings import Settings, from_mapping

from . import ecr_referrers
from .registry_proxy import ProxyReply, ProxyRequest, RegistryProxy

ACCOUNT_A = "123456789012"
"""moto's default account: what the `testing` keys (the default chain) belong to."""
ACCOUNT_B = "210987654321"
_ROUTE = re.compile(r"^/v2/(?P<repo>.+)/(?P<area>manifests|blobs|tags)/(?P<rest>[^?]*)")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MotoServer:
    url: str

    def reset(self) -> None:
        OPENER.open(urllib.request.Request(self.url + "/moto-api/reset", method="POST"), timeout=10).read()


def helper_client(service: str, region: str, **credentials: str) -> Any:
    """A client for the test's own bookkeeping: flagged so that API call counts leave it out."""
    make: Any = boto3.client  # typed per service literal by boto3-stubs
    client = make(service, region_name=region, **credentials)
    client._ecr_transfer_test_helper = True
    return client


def account_keys(
    account_id: str, region: str, user: str = "transfer", policy: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Long-lived access keys of a new IAM user in `account_id` (moto maps them to that account),
    with `policy` as its inline policy (what counts once moto enforces IAM)."""
    partition = "aws-cn" if region.startswith("cn-") else "aws"
    sts = helper_client("sts", region)
    creds = sts.assume_role(RoleArn=f"arn:{partition}:iam::{account_id}:role/bootstrap", RoleSessionName="setup")[
        "Credentials"
    ]
    iam = helper_client(
        "iam",
        region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    iam.create_user(UserName=user)
    if policy is not None:
        iam.put_user_policy(UserName=user, PolicyName="policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


class ApiCalls:
    """Counts every AWS API call the product makes (helper clients excluded), by service and operation."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        original = botocore.client.BaseClient._make_api_call  # type: ignore[attr-defined]
        calls = self.calls

        def counting(client: Any, operation: str, params: Any) -> Any:
            if not getattr(client, "_ecr_transfer_test_helper", False):
                calls[(client.meta.service_model.service_name, operation)] += 1
            return original(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)

    def of(self, service: str) -> dict[str, int]:
        return {op: n for (svc, op), n in self.calls.items() if svc == service}

    def reset(self) -> None:
        self.calls.clear()


def _error(status: int, code: str, message: str) -> ProxyReply:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": {}}]}).encode()
    return ProxyReply(status, [("Content-Type", "application/json; charset=utf-8")], body)


class EcrEmulator:
    """One ECR registry (account + region): `host` is its ECR name, `endpoint` where it really is."""

    def __init__(
        self, registry: LocalRegistry, account_id: str, region: str, *, listen: str = "127.0.0.1", **credentials: str
    ) -> None:
        """`listen`: where its front door is (the Docker bridge's gateway for Lambda containers)."""
        self.registry = registry
        self.account_id = account_id
        self.region = region
        self.host = registry_host(account_id, region)
        self.ecr = helper_client("ecr", region, **credentials)
        self.proxy = RegistryProxy(registry.host, before=self._before, after=self._after, listen=listen).start()

    @staticmethod
    def token_password(account_id: str) -> str:
        """The password in moto's GetAuthorizationToken answer (base64 of `AWS:<this>`)."""
        return f"{account_id}-auth-token"

    @property
    def address(self) -> str:
        return self.proxy.host

    @property
    def endpoint(self) -> str:
        return f"http://{self.proxy.host}"

    def _repository(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.ecr.describe_repositories(repositoryNames=[name])["repositories"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "RepositoryNotFoundException":
                return None
            raise
        return dict(found[0])

    def _before(self, request: ProxyRequest) -> ProxyReply | None:
        referrers = ecr_referrers.answer(request, host=self.host, ecr=self.ecr, authorization=self.authorization)
        if referrers is not None:
            return referrers
        route = _ROUTE.match(request.path)
        if route is None or request.method not in ("PUT", "POST", "PATCH"):
            return None
        repo, area, ref = route["repo"], route["area"], route["rest"]
        repository = self._repository(repo)
        if repository is None:
            return _error(
                404,
                "NAME_UNKNOWN",
                f"The repository with name '{repo}' does not exist in the registry with id '{self.account_id}'",
            )
        immutable = repository["imageTagMutability"] == "IMMUTABLE"
        if area == "manifests" and immutable and not ref.startswith("sha256:") and self.digest(repo, ref) is not None:
            return _error(
                400,
                "TAG_INVALID",
                f"The image tag '{ref}' already exists in the '{repo}' repository and cannot be overwritten "
                "because the tag is immutable.",
            )
        return None

    def _after(self, request: ProxyRequest, reply: ProxyReply) -> ProxyReply:
        route = _ROUTE.match(request.path)
        if request.method == "PUT" and route and route["area"] == "manifests" and reply.status == 201:
            ref = route["rest"]
            arguments: dict[str, Any] = {
                "repositoryName": route["repo"],
                "imageManifest": request.body.decode(),
                "imageDigest": "sha256:" + hashlib.sha256(request.body).hexdigest(),
                "imageManifestMediaType": request.header("Content-Type") or "",
            }
            if not ref.startswith("sha256:"):
                arguments["imageTag"] = ref
            try:
                self.ecr.put_image(**arguments)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ImageAlreadyExistsException":
                    raise
        return reply

    def create_repository(self, name: str, mutability: str = "MUTABLE") -> None:
        if self._repository(name) is None:
            self.ecr.create_repository(repositoryName=name, imageTagMutability=mutability)

    def publish(self, layout: Path, sample: str, repo: str, tag: str, *, mutability: str = "MUTABLE") -> str:
        """Push `oci:layout:sample` as repo:tag through the ECR front door; returns the digest."""
        self.create_repository(repo, mutability)
        work = Path(tempfile.mkdtemp(prefix="ecr-publish-"))
        try:
            auth = {"auths": {self.address: {"auth": self._basic()}}}
            authfile = work / "auth.json"
            authfile.write_text(json.dumps(auth))
            authfile.chmod(0o600)
            result = subprocess.run(
                ["skopeo", "--insecure-policy", "copy", "--all", "--authfile", str(authfile),
                 "--dest-tls-verify=false", "--digestfile", str(work / "digest"),
                 f"oci:{layout}:{sample}", f"docker://{self.address}/{repo}:{tag}"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise RuntimeError(f"publishing {repo}:{tag} failed: {result.stderr}")
            return (work / "digest").read_text().strip()
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _basic(self) -> str:
        return base64.b64encode(f"AWS:{self.token_password(self.account_id)}".encode()).decode()

    @property
    def authorization(self) -> str:
        """The Authorization header of a GetAuthorizationToken login."""
        return f"Basic {self._basic()}"

    def digest(self, repo: str, tag: str) -> str | None:
        """What ECR's control plane says repo:tag is."""
        try:
            details = self.ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": tag}])["imageDetails"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ImageNotFoundException", "RepositoryNotFoundException"):
                return None
            raise
        return str(details[0]["imageDigest"]) if details else None

    def tags(self, repo: str) -> dict[str, str]:
        pages = self.ecr.get_paginator("describe_images").paginate(repositoryName=repo, filter={"tagStatus": "TAGGED"})
        return {t: d["imageDigest"] for page in pages for d in page["imageDetails"] for t in d.get("imageTags", [])}

    def stop(self) -> None:
        self.proxy.stop()


SECRET = "ecr-transfer/china-keys"


@dataclass
class EcrPair:
    a: EcrEmulator
    """Account A, us-east-1 (the default credential chain)."""
    b: EcrEmulator
    """Account B, cn-north-1 (keys in a Secrets Manager secret)."""
    images: SampleImages

    def settings(self, **extra: Any) -> Settings:
        return from_mapping(self.raw_settings(**extra))

    def raw_settings(self, **extra: Any) -> dict[str, Any]:
        """ECR account A (us-east-1, every repository) to account B (cn-north-1), as a config file has it."""
        return {
            "sourceType": "Amazon_ECR",
            "srcRegion": "us-east-1",
            "srcList": "ALL",
            "destRegion": "cn-north-1",
            "destAccountId": ACCOUNT_B,
            "destCredential": SECRET,
            "registryEndpoints": {self.a.host: self.a.endpoint, self.b.host: self.b.endpoint},
            "insecureRegistries": [self.a.address, self.b.address],
            **extra,
        }


@contextlib.contextmanager
def moto_server_on(
    host: str = "127.0.0.1", *, command: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Iterator[MotoServer]:
    """A moto_server process on `host` (loopback, or the Docker bridge for Lambda containers).

    `command` runs another server taking moto_server's arguments (tests/support/moto_iam.py)."""
    if command is None:
        binary = Path(sys.executable).parent / "moto_server"
        found = str(binary) if binary.exists() else shutil.which("moto_server")
        if found is None:
            pytest.skip("moto_server is not installed (pip install 'moto[server]')")
        command = [found]
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - open for the whole session, closed at teardown
    proc = subprocess.Popen(
        [*command, "-H", host, "-p", str(port)],
        env={**(os.environ if env is None else env), "MOTO_PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            OPENER.open(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise RuntimeError(f"moto_server did not start: {log.read().decode(errors='replace')}") from None
            time.sleep(0.05)
    try:
        yield MotoServer(url)
    finally:
        stop_process(proc)
        log.close()


def use_moto(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    """Reset `moto_server` and point every boto3 client of this process (and its children) at it."""
    moto_server.reset()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    return moto_server
