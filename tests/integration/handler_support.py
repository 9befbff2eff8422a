"""What the Lambda handler tests share: the handlers loaded as Lambda loads them, the events of
events/, and moto set up as the template's environment and two ECR registries (two regions).
Load with `pytest_plugins = ["integration.handler_support"]`; the fixture is `lambda_env`."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_transfer.ledger.dynamodb import DynamoDBLedger, table_definition

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
ACCOUNT = "123456789012"
SRC_REGION, DST_REGION = "us-west-2", "us-east-1"
SRC_HOST = f"{ACCOUNT}.dkr.ecr.{SRC_REGION}.amazonaws.com"
DST_HOST = f"{ACCOUNT}.dkr.ecr.{DST_REGION}.amazonaws.com"
BUCKET = "dthecrstack-workbucket-test"
TABLE = "DTHECRStack-LedgerTable-TEST"
LIST_PARAMETER = "/DTHECRStack/srcImageList"


def manifest(seed: str) -> tuple[str, str]:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{seed * 64}",
                "size": 2,
            },
            "layers": [],
        }
    )
    return body, "sha256:" + hashlib.sha256(body.encode()).hexdigest()


@dataclass
class LambdaContext:
    function_name: str = "DTHECRStack-ListImagesFunction"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{DST_REGION}:{ACCOUNT}:function:DTHECRStack-ListImagesFunction"
    aws_request_id: str = "req-1"


def event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    if data.get("bucket", "").startswith("REPLACE"):
        data["bucket"] = BUCKET
    return data


def load_handler(function: str) -> ModuleType:
    """src/<function>/app.py as Lambda imports it (a fresh module each time: no state leaks)."""
    # Powertools' Logger keeps the handler of the first Logger of a service, bound to the stdout of
    # the test that created it; point it at this test's stdout, as a cold start would.
    for handler in logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "ecr-transfer")).handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = sys.stdout  # not setStream: it flushes the old one, maybe closed
    spec = importlib.util.spec_from_file_location(f"{function}_app", ROOT / "src" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"errors":[{"code":"NOT_FOUND","message":"no such route"}]}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def registry_without_referrers_api() -> Iterator[str]:
    """The ECR source's registry endpoint for tests whose ECR lives in moto (in-process) only.

    Planning asks an ECR source's registry for its images' referrers (OCI 1.1 referrers API); moto
    has no registry, and the real ECR host must never be contacted. This loopback endpoint answers
    404 to everything, as distribution 2.8 does to that API: the source counts as one without it,
    asked once per run, and the tag-named referrers (from DescribeImages) are all there is.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    with registry_without_referrers_api() as endpoint, _lambda_env(monkeypatch, endpoint) as env:
        yield env


@contextmanager
def _lambda_env(monkeypatch: pytest.MonkeyPatch, src_registry: str) -> Iterator[dict[str, str]]:
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": DST_REGION,
        "AWS_REGION": DST_REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "ecr-transfer",
        "POWERTOOLS_METRICS_NAMESPACE": "ECRTransfer",
        # What template.yaml gives the lister (tests/unit/test_template.py keeps them in step).
        "ECR_TRANSFER_LEDGER": f"dynamodb://{TABLE}",
        "ECR_TRANSFER_WORK_BUCKET": BUCKET,
        "SRC_IMAGE_LIST_PARAMETER": LIST_PARAMETER,
        "SOURCE_TYPE": "Amazon_ECR",
        "SRC_LIST": "SELECTED",
        "SRC_REGION": SRC_REGION,
        "SRC_ACCOUNT_ID": "",
        "SRC_CREDENTIAL": "",
        "DEST_TYPE": "Amazon_ECR",
        "DEST_REGION": DST_REGION,
        "DEST_ACCOUNT_ID": ACCOUNT,
        "DEST_PREFIX": "",
        "INCLUDE_UNTAGGED": "true",
        "CONCURRENCY": "10",
        "REPO_TAG_MUTABILITY": "MUTABLE",
        # Not the template's: where the source's registry API is (see registry_without_referrers_api).
        "REGISTRY_ENDPOINTS": json.dumps({SRC_HOST: src_registry}),
        "INSECURE_REGISTRIES": SRC_HOST,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        src = boto3.client("ecr", region_name=SRC_REGION)
        dst = boto3.client("ecr", region_name=DST_REGION)
        src.create_repository(repositoryName="team/app")
        dst.create_repository(repositoryName="team/app")
        for tag, seed in (("1.0", "1"), ("2.0", "2")):
            body, digest = manifest(seed)
            src.put_image(repositoryName="team/app", imageManifest=body, imageTag=tag, imageDigest=digest)
        body, digest = manifest("1")
        dst.put_image(repositoryName="team/app", imageManifest=body, imageTag="1.0", imageDigest=digest)
        boto3.client("ssm").put_parameter(Name=LIST_PARAMETER, Value="team/app:ALL_TAGS", Type="String")
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("dynamodb").create_table(**table_definition(TABLE))  # the template's table
        yield env


def ledger() -> DynamoDBLedger:
    return DynamoDBLedger(TABLE, client=boto3.client("dynamodb"), heartbeat=False)


def emitted_metrics(output: str) -> dict[str, float]:
    """The CloudWatch embedded-metric-format lines Powertools printed."""
    found: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            doc = json.loads(line)
            for definition in doc["_aws"]["CloudWatchMetrics"]:
                assert definition["Namespace"] == "ECRTransfer"
                for metric in definition["Metrics"]:
                    value = doc[metric["Name"]]
                    found[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return found


STATE_MACHINE = "DTHECRStack-ECRReplicationSM"


def stub_state_machine(sfn: Any) -> str:
    """A state machine named as the stack names it, for the push intake to start (moto)."""
    arn: str = sfn.create_state_machine(
        name=STATE_MACHINE,
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/ecr-transfer-sm",
    )["stateMachineArn"]
    return arn
