"""moto_server with IAM enforcement that looks at resources and conditions, not only at actions.

moto enforces IAM once INITIAL_NO_AUTH_ACTION_COUNT requests have passed (or after
`POST /moto-api/reset-auth`), but it authorizes most services against the resource `*`, so a
policy scoped to a table or a repository ARN never matches, and it evaluates no condition of an
identity policy. This server keeps moto's own steps (the caller's access key, its signature, the
policies of its user or assumed role, a role's trust policy on AssumeRole) and replaces only the
decision: every request becomes the IAM checks AWS makes for it (`checks()`: the action on the
ARN of the resource the request names, with the context keys AWS sets), and each check is decided
by tests/support/iam_policy.py. Where a service acts on the caller's behalf, the checks AWS makes
of that are added: kms:Decrypt through Secrets Manager for a secret with a customer-managed key,
kms:CreateGrant and kms:DescribeKey through ECR for a KMS-encrypted repository, ecr:TagResource
for tags given to CreateRepository.

Every decision is appended to the JSON-lines file named by the environment variable below, so a
test can assert what was allowed and what was refused. A request of a service not modelled in
`checks()` is refused and logged as such: a gap in this model fails a test instead of passing it.

Run: PYTHONPATH=tests python -m support.moto_iam -H 127.0.0.1 -p PORT (moto_server's arguments)
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from typing import Any
from urllib.parse import unquote

from support.iam_policy import Check, decide

DECISIONS_LOG = "ECR_TRANSFER_TEST_IAM_DECISIONS"
_LOCK = threading.Lock()
SERVICE_LINKED_ROLES = {"ecs.amazonaws.com": "AWSServiceRoleForECS"}


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws"


def _suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


def _params(request: Any) -> dict[str, Any]:
    body = request._body or b""
    if isinstance(body, bytes) and body.lstrip().startswith(b"{"):
        return dict(json.loads(body))
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in (request._data or {}).items()}


def _kms_arn(key: str, region: str, account: str) -> str:
    return key if key.startswith("arn:") else f"arn:{_partition(region)}:kms:{region}:{account}:key/{key}"


def _ecr(op: str, params: dict[str, Any], region: str, account: str) -> list[Check]:
    if op == "GetAuthorizationToken":
        return [Check("ecr:GetAuthorizationToken", "*")]
    registry = params.get("registryId") or account
    names = params.get("repositoryNames") or [params.get("repositoryName", "*")]
    arns = [f"arn:{_partition(region)}:ecr:{region}:{registry}:repository/{n}" for n in names]
    # ListImageReferrers is authorized as ecr:BatchGetImage: what the README says the lister relies
    # on (abe6dea; not checked against IAM's reference here). Every other operation is its own action.
    action = "ecr:BatchGetImage" if op == "ListImageReferrers" else f"ecr:{op}"
    checks = [Check(action, arn) for arn in arns]
    if op == "CreateRepository":
        if params.get("tags"):
            checks.append(Check("ecr:TagResource", arns[0]))
        encryption = params.get("encryptionConfiguration") or {}
        if encryption.get("encryptionType") == "KMS" and encryption.get("kmsKey"):
            key = _kms_arn(encryption["kmsKey"], region, account)
            via = {"kms:ViaService": f"ecr.{region}.{_suffix(region)}"}
            checks += [Check("kms:CreateGrant", key, via), Check("kms:DescribeKey", key, via)]
    return checks


def _secret(op: str, params: dict[str, Any], region: str, account: str) -> list[Check]:
    from moto.secretsmanager.models import secretsmanager_backends

    backend = secretsmanager_backends[account][region]
    secret_id = params["SecretId"]
    try:
        described = backend.describe_secret(secret_id)
        info = described if isinstance(described, dict) else described.to_dict()
    except Exception:  # a missing secret: IAM still decides on the ARN asked for
        info = {"ARN": secret_id if secret_id.startswith("arn:") else f"arn:*:secret:{secret_id}-??????"}
    checks = [Check(f"secretsmanager:{op}", str(info["ARN"]))]
    key = info.get("KmsKeyId")
    if op == "GetSecretValue" and key and not str(key).startswith("alias/aws/"):
        via = {"kms:ViaService": f"secretsmanager.{region}.{_suffix(region)}"}
        checks.append(Check("kms:Decrypt", _kms_arn(str(key), region, account), via))
    return checks


def checks(request: Any, resource_hint: str) -> list[Check] | None:
    """The IAM checks AWS makes for this request; None when the request is not modelled here."""
    service, op = request._action.split(":", 1)
    region, account = request._region, request.account_id
    partition = _partition(region)
    params = _params(request)
    if service == "s3":  # moto computes the bucket/object ARN for S3 itself...
        if op == "DeleteObject" and request._method == "POST":
            # ...but for DeleteObjects it checks the bucket; S3 checks s3:DeleteObject on each key.
            keys = re.findall(rb"<Key>(.*?)</Key>", request._body or b"")
            return [Check("s3:DeleteObject", f"{resource_hint}/{k.decode()}") for k in keys]
        return [Check(f"s3:{op}", resource_hint)]
    if service == "sts":
        if op == "GetCallerIdentity":
            return []
        if op == "AssumeRole":
            return [Check("sts:AssumeRole", str(params["RoleArn"]))]
    if service == "dynamodb":
        if op in ("BatchWriteItem", "BatchGetItem"):  # one check per table the batch names
            tables = sorted(params["RequestItems"])
            return [Check(f"dynamodb:{op}", f"arn:{partition}:dynamodb:{region}:{account}:table/{t}") for t in tables]
        arn = f"arn:{partition}:dynamodb:{region}:{account}:table/{params['TableName']}"
        return [Check(f"dynamodb:{op}", arn + (f"/index/{params['IndexName']}" if params.get("IndexName") else ""))]
    if service == "ecr":
        return _ecr(op, params, region, account)
    if service == "ssm" and op in ("GetParameter", "GetParameters"):
        names = params.get("Names") or [params["Name"]]
        return [Check(f"ssm:{op}", f"arn:{partition}:ssm:{region}:{account}:parameter/{n.lstrip('/')}") for n in names]
    if service == "secretsmanager":
        return _secret(op, params, region, account)
    if service == "states" and op == "StartExecution":
        return [Check("states:StartExecution", str(params["stateMachineArn"]))]
    if service == "lambda" and op == "GetFunction":
        name = unquote(request._path.split("/functions/", 1)[1].split("?", 1)[0].rstrip("/"))
        arn = name if name.startswith("arn:") else f"arn:{partition}:lambda:{region}:{account}:function:{name}"
        return [Check("lambda:GetFunction", arn)]
    if service == "iam" and op == "CreateServiceLinkedRole":
        name = params["AWSServiceName"]
        role = SERVICE_LINKED_ROLES.get(name, f"AWSServiceRoleFor{name.split('.')[0]}")
        arn = f"arn:{partition}:iam::{account}:role/aws-service-role/{name}/{role}"
        return [Check("iam:CreateServiceLinkedRole", arn, {"iam:AWSServiceName": name})]
    return None


def _log(entry: dict[str, Any]) -> None:
    path = os.environ.get(DECISIONS_LOG)
    if path:
        with _LOCK, open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


# Services whose JSON APIs answer AccessDeniedException (moto answers them all in IAM's XML).
_JSON_SERVICES = {"dynamodb", "ecr", "ssm", "secretsmanager", "kms", "states", "lambda"}


def _refuse(request: Any, principal: str, check: Check) -> None:
    if request._service in _JSON_SERVICES:
        from moto.core.exceptions import JsonRESTError

        message = f"User: {principal} is not authorized to perform: {check.action} on resource: {check.resource}"
        raise JsonRESTError("AccessDeniedException", message)
    request._raise_access_denied()


def check_action_permitted(self: Any, resource: str) -> None:
    """Replaces moto's IAMRequestBase.check_action_permitted."""
    from moto.iam.access_control import IAMPolicy

    principal = self._access_key.arn
    wanted = checks(self, resource)
    if wanted is None:
        _log({"principal": principal, "action": self._action, "resource": resource, "decision": "not-modelled"})
        _refuse(self, principal, Check(self._action, resource))
        return
    documents = [IAMPolicy(p)._policy_json for p in self._access_key.collect_policies()]
    for check in wanted:
        decision = decide(documents, check)
        _log({"principal": principal, "action": check.action, "resource": check.resource, "decision": decision})
        if decision != "allow":
            _refuse(self, principal, check)
    role = next((c.resource for c in wanted if c.action == "sts:AssumeRole"), None)
    if role and self._is_assuming_role_operation(role) and not self._check_role_trust_relationship(role):
        _log({"principal": principal, "action": "sts:AssumeRole", "resource": role, "decision": "trust-deny"})
        self._raise_access_denied()


def main(argv: list[str]) -> None:
    from moto.iam.access_control import IAMRequestBase
    from moto.server import main as moto_main

    IAMRequestBase.check_action_permitted = check_action_permitted  # type: ignore[method-assign]
    check_signature = IAMRequestBase.check_signature

    def signature_unless_lambda(self: Any) -> None:
        # moto 5.2.5 recomputes Lambda's REST signatures wrongly (every GetFunction is refused
        # with SignatureDoesNotMatch); the policies are what this server checks, so skip it there.
        if self._service != "lambda":
            check_signature(self)

    IAMRequestBase.check_signature = signature_unless_lambda  # type: ignore[method-assign]
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
