"""A deployed stack's identities in moto, with IAM enforced on resources and conditions.

Load its fixtures with `pytest_plugins = ["integration.iam_world"]`.

`iam_moto` runs tests/support/moto_iam.py (moto_server whose IAM decisions look at resource ARNs
and conditions). `Stack` transforms template.yaml with SAM's translator, resolves it for one
scenario's parameters, and creates each role the stack deploys (the Lambda functions' roles, the
task role) in moto with exactly the policy documents CloudFormation would give it. `as_role`
then runs code with that role's temporary credentials, the way Lambda and Fargate hand them over
(the environment's AWS_* variables). Set-up and checks use an administrator created for the test,
before enforcement is switched on (`POST /moto-api/reset-auth`).

What is not modelled: AWS managed policies attached by SAM (basic logging, X-Ray: nothing here
calls CloudWatch Logs or X-Ray), the work bucket's policy (it refuses plain HTTP, and moto is
plain HTTP), and the execution role (ECS itself pulls the image; no code of ours runs with it).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from ecr_transfer.local.accesslog import RequestKind, classify
from support.cfn import Deployment, Resolver, transformed
from support.iam import role_documents
from support.iam_policy import Check, decide
from support.moto_iam import DECISIONS_LOG

from .ecr_support import ACCOUNT_A, OPENER, EcrEmulator, MotoServer, helper_client, moto_server_on, use_moto

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
STACK = "DTHECRStack"
TABLE = f"{STACK}-LedgerTable-IAM1"
BUCKET = "dthecrstack-workbucket-iam1"
LIST_PARAMETER = f"/{STACK}/srcImageList"
STATE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT_A}:stateMachine:{STACK}-ECRReplicationSM"
COPIER_FUNCTION = f"{STACK}-CopierImageFunction-IAM1"
ROLES = (
    "ListerFunctionRole",
    "RecorderFunctionRole",
    "DeployHelperFunctionRole",
    "TaskRole",
    "CopierImageFunctionRole",
)
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
_TRANSFORMED: dict[str, dict[str, Any]] = {}


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_A}:{resource}"


# Physical ids and attributes CloudFormation would give the stack's resources.
RESOURCES: dict[str, dict[str, str]] = {
    "LedgerTable": {"Ref": TABLE, "Arn": _arn("dynamodb", f"table/{TABLE}")},
    "WorkBucket": {"Ref": BUCKET, "Arn": f"arn:aws:s3:::{BUCKET}"},
    "ImageListParameter": {"Ref": LIST_PARAMETER},
    "CopierImageFunction": {"Arn": _arn("lambda", f"function:{COPIER_FUNCTION}")},
    "Cluster": {"Ref": f"{STACK}-Cluster-IAM1", "Arn": _arn("ecs", f"cluster/{STACK}-Cluster-IAM1")},
    "ReplicationStateMachine": {"Ref": STATE_MACHINE},
    **{role: {"Arn": f"arn:aws:iam::{ACCOUNT_A}:role/{role}", "Ref": role} for role in ROLES},
}


@dataclass
class IamMoto:
    url: str
    log: Path

    def _post(self, path: str, body: bytes = b"") -> None:
        request = urllib.request.Request(self.url + path, data=body, method="POST")
        request.add_header("Content-Type", "text/plain")
        OPENER.open(request, timeout=10).read()

    def reset(self) -> None:
        """Empty backends, IAM not enforced, no decisions logged."""
        self._post("/moto-api/reset")
        self._post("/moto-api/reset-auth", b"inf")
        self.log.write_text("")

    def enforce(self) -> None:
        self._post("/moto-api/reset-auth", b"0")

    def decisions(self) -> list[dict[str, str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def refused(self) -> list[tuple[str, str, str]]:
        """(role or user, action, resource) of every request IAM refused."""
        return [
            (
                d["principal"].split("/")[1] if ":assumed-role/" in d["principal"] else d["principal"],
                d["action"],
                d["resource"],
            )
            for d in self.decisions()
            if d["decision"] != "allow"
        ]

    def allowed(self, principal: str) -> set[str]:
        return {
            d["action"] for d in self.decisions() if d["decision"] == "allow" and f"/{principal}/" in d["principal"]
        }


@pytest.fixture(scope="session")
def iam_moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamMoto]:
    log = tmp_path_factory.mktemp("iam") / "decisions.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), DECISIONS_LOG: str(log)}
    with moto_server_on(command=[sys.executable, "-m", "support.moto_iam"], env=env) as server:
        yield IamMoto(server.url, log)


@pytest.fixture
def iam_moto(iam_moto_server: IamMoto, monkeypatch: pytest.MonkeyPatch) -> IamMoto:
    use_moto(MotoServer(iam_moto_server.url), monkeypatch)
    iam_moto_server.reset()
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    return iam_moto_server


def _without(document: dict[str, Any], what: str) -> dict[str, Any]:
    """The document without the statement whose Sid is `what`, or without the action `what`."""
    statements = []
    for statement in document["Statement"]:
        if statement.get("Sid") == what:
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        kept = [a for a in actions if a != what]
        if kept:
            statements.append({**statement, "Action": kept})
    return {**document, "Statement": statements}


def _forget_clients() -> None:
    """Drop what caches credentials and endpoints per process: boto3's default session keeps the
    credentials it resolved first, Powertools keeps its SSM client (other tests' lister included)."""
    from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS

    boto3.DEFAULT_SESSION = None
    DEFAULT_PROVIDERS.clear()


@dataclass
class Stack:
    """template.yaml deployed for `params`: its roles in moto, their credentials, their environments."""

    params: Mapping[str, str]
    without: tuple[str, str] | None = None
    """(role, action or Sid): deploy that role without it, to prove that the tests notice."""
    resolver: Resolver = field(init=False)
    deployed: dict[str, dict[str, Any]] = field(init=False)
    credentials: dict[str, dict[str, str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if REGION not in _TRANSFORMED:
            _TRANSFORMED[REGION] = transformed(REGION)
        self.resolver = Resolver(_TRANSFORMED[REGION], self.params, RESOURCES, Deployment(REGION, ACCOUNT_A, STACK))
        self.deployed = self.resolver.deployed()

    def policies(self, role: str) -> list[dict[str, Any]]:
        """The policy documents CloudFormation gives `role` (inline and attached), resolved for this deployment."""
        documents = role_documents(self.deployed, role)
        if self.without and self.without[0] == role:
            stripped = [_without(d, self.without[1]) for d in documents]
            assert stripped != documents, f"{self.without} is not in the template"
            documents = stripped
        return documents

    def create_roles(self) -> None:
        """Every role of ROLES in moto, with its trust policy and its inline policies; then its credentials."""
        iam = helper_client("iam", REGION)
        sts = helper_client("sts", REGION)
        for role in ROLES:
            props = self.deployed[role]["Properties"]
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
            for n, document in enumerate(self.policies(role)):
                # SAM writes the functions' inline statements without a Version; IAM reads that as
                # 2008-10-17 (no policy variables, none used here), moto refuses it.
                document = {"Version": "2012-10-17", **document}
                iam.put_role_policy(RoleName=role, PolicyName=f"policy{n}", PolicyDocument=json.dumps(document))
            creds = sts.assume_role(RoleArn=RESOURCES[role]["Arn"], RoleSessionName=f"{role}-session")["Credentials"]
            self.credentials[role] = {
                "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"],
            }

    def function_env(self, function: str) -> dict[str, str]:
        variables = self.deployed[function]["Properties"]["Environment"]["Variables"]
        return {k: str(v) for k, v in variables.items()}

    def task_env(self) -> dict[str, str]:
        (container,) = self.deployed["CopierTaskDefinition"]["Properties"]["ContainerDefinitions"]
        return {e["Name"]: str(e["Value"]) for e in container["Environment"]}

    def image_list(self) -> str:
        return str(self.deployed["ImageListParameter"]["Properties"]["Value"])

    def ledger_table(self) -> dict[str, Any]:
        props = self.deployed["LedgerTable"]["Properties"]
        keys = ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "BillingMode")
        return {"TableName": TABLE, **{k: props[k] for k in keys}}

    @contextmanager
    def as_role(self, role: str, environ: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
        """os.environ as Lambda/Fargate set it for `role`: its credentials, plus `environ`."""
        saved = dict(os.environ)
        os.environ.update(environ or {})
        os.environ.update(self.credentials[role])
        # Powertools' Logger is a process-wide logger named after the service, bound to the stdout it
        # first saw: a name of its own keeps this test's capture out of other tests' Lambda logs.
        os.environ["POWERTOOLS_SERVICE_NAME"] = "ecr-transfer-iam-test"
        _forget_clients()
        try:
            yield dict(os.environ)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            _forget_clients()


# ECR authorizes every registry API request too, as an IAM action on the repository, for the
# identity that got the token. docker-registry does not: these are the checks ECR would make.
_REGISTRY_ACTIONS = {
    RequestKind.TAGS_LIST: "ecr:ListImages",
    RequestKind.MANIFEST_HEAD: "ecr:BatchGetImage",
    RequestKind.MANIFEST_GET: "ecr:BatchGetImage",
    RequestKind.MANIFEST_PUT: "ecr:PutImage",
    RequestKind.BLOB_HEAD: "ecr:BatchCheckLayerAvailability",
    RequestKind.BLOB_GET: "ecr:GetDownloadUrlForLayer",
    RequestKind.BLOB_MOUNT: "ecr:InitiateLayerUpload",
    RequestKind.UPLOAD_POST: "ecr:InitiateLayerUpload",
    RequestKind.UPLOAD_PATCH: "ecr:UploadLayerPart",
    RequestKind.UPLOAD_PUT: "ecr:CompleteLayerUpload",
    # OCI 1.1 referrers API: AWS documents its control-plane twin, ListImageReferrers, as needing
    # ecr:BatchGetImage ("The IAM principal invoking this operation must have the ecr:BatchGetImage
    # permission", ECR API reference and botocore's model) and names no action of its own for it.
    RequestKind.REFERRERS: "ecr:BatchGetImage",
}


def registry_checks(emulator: EcrEmulator) -> list[Check]:
    """What ECR would authorize for the registry requests `emulator` has seen since its last reset."""
    partition = "aws-cn" if emulator.region.startswith("cn-") else "aws"
    arn = f"arn:{partition}:ecr:{emulator.region}:{emulator.account_id}:repository/"
    # What came through the ECR front door (the emulator's proxy), not the backend registry's access
    # log: another process's client retrying a port this backend now holds is not this run's request.
    wanted = set()
    for method, path, _status in emulator.proxy.seen():
        kind, repo, _ref = classify(method, path)
        if kind in _REGISTRY_ACTIONS and repo:
            wanted.add((_REGISTRY_ACTIONS[kind], arn + repo))
    return [Check(action, resource) for action, resource in sorted(wanted)]


def registry_refusals(
    emulator: EcrEmulator, documents: list[dict[str, Any]], *, written: str | None = None
) -> list[tuple[str, str]]:
    """(action, repository ARN) of the registry requests ECR would refuse the holder of `documents`.

    With `written` (the destination prefix), a blob HEAD on a repository outside it is left out:
    skopeo's blob-info cache (for root /var/lib/containers/cache, shared by every copy on the
    machine) names repositories of the same registry where a blob was seen before, and skopeo
    probes them for a cross-repository mount; a refusal there only means no mount, the blob is
    uploaded. Every other refused request is one the run needed.
    """
    refused = sorted((c.action, c.resource) for c in registry_checks(emulator) if decide(documents, c) != "allow")
    if written is None:
        return refused
    inside = f":repository/{written.strip('/')}/"
    return [(a, r) for a, r in refused if a != "ecr:BatchCheckLayerAvailability" or inside in r]
