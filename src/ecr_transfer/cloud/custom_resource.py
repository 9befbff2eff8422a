"""CloudFormation custom resources of the stack, served by one small Lambda.

Custom::CopierImage     the digest URI of the image `sam build` pushed for the copier's image
                        function (lambda:GetFunction), and its repository ARN for the pull policy;
Custom::StartExecution  starts a run on create and on every update that changes what is
                        transferred ("the transfer starts right away");
Custom::EmptyBucket     empties the work bucket on delete, so deleting the stack just works;
Custom::EcsServiceLinkedRole  creates AWSServiceRoleForECS before the stack creates its cluster:
                        in an account that never used ECS, AWS::ECS::Cluster fails without it.

Every path answers CloudFormation, failures included: a custom resource that never answers
leaves the stack waiting for an hour.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

_IMAGE_URI = re.compile(
    r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/(?P<repo>[^@:]+)(?:[@:].+)?\Z"
)
_REASON_LIMIT = 1000

Sender = Callable[[Mapping[str, Any], str, str, Mapping[str, Any], str], None]


def send_response(
    event: Mapping[str, Any], status: str, physical_id: str, data: Mapping[str, Any], reason: str
) -> None:
    """PUT the result to the pre-signed ResponseURL (never logged: it is a credential)."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:_REASON_LIMIT],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": dict(data),
        }
    ).encode()
    request = urllib.request.Request(
        str(event["ResponseURL"]),
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def copier_image(version_arn: str, lambda_client: Any) -> dict[str, str]:
    """The image URI by digest (so Fargate runs exactly what was built) and its repository ARN."""
    code = lambda_client.get_function(FunctionName=version_arn)["Code"]
    uri = str(code.get("ResolvedImageUri") or code["ImageUri"])
    match = _IMAGE_URI.match(uri)
    if match is None:
        raise ValueError(f"not an ECR image URI: {uri}")
    partition = version_arn.split(":")[1]
    repo = match["repo"]
    return {
        "ImageUri": uri,
        "RepositoryName": repo,
        "RepositoryArn": f"arn:{partition}:ecr:{match['region']}:{match['account']}:repository/{repo}",
    }


def start_execution(
    state_machine_arn: str, execution_input: str, sfn: Any, *, attempts: int = 6, delay: float = 5.0
) -> dict[str, str]:
    """Start the first run. Retries cover IAM's propagation delay right after the stack created the roles."""
    name = f"deploy-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    for attempt in range(1, attempts + 1):
        try:
            response = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=execution_input)
            return {"ExecutionArn": str(response["executionArn"])}
        except sfn.exceptions.ExecutionAlreadyExists:
            return {"ExecutionArn": f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"}
        except Exception:
            if attempt == attempts:
                raise
            log.warning("StartExecution failed (attempt %d of %d), retrying", attempt, attempts, exc_info=True)
            time.sleep(delay * attempt)
    raise AssertionError("unreachable")


def empty_bucket(bucket: str, s3: Any) -> int:
    """Delete every object; a bucket that is already gone is empty enough."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            for start in range(0, len(keys), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True})
            deleted += len(keys)
    except s3.exceptions.NoSuchBucket:
        return deleted
    return deleted


ECS_SERVICE = "ecs.amazonaws.com"
ROLE_PROPAGATION_SECONDS = 10.0
"""A role IAM has just created is not visible to ECS at once."""


def ecs_service_linked_role(iam: Any, *, wait: float = ROLE_PROPAGATION_SECONDS) -> dict[str, str]:
    """Create ECS's service-linked role unless the account has it (never deleted: ECS owns it)."""
    try:
        role = iam.create_service_linked_role(AWSServiceName=ECS_SERVICE)["Role"]
    except (iam.exceptions.InvalidInputException, iam.exceptions.EntityAlreadyExistsException) as exc:
        # IAM says "Service role name AWSServiceRoleForECS has been taken in this account".
        if "has been taken" not in str(exc) and "already exists" not in str(exc):
            raise
        log.info("the ECS service-linked role exists already")
        return {"Created": "false"}
    log.info("created the ECS service-linked role %s", role["Arn"])
    time.sleep(wait)
    return {"Created": "true"}


@dataclass
class Clients:
    lambda_: Any = None
    sfn: Any = None
    s3: Any = None
    iam: Any = None

    def get(self, service: str) -> Any:
        """The boto3 client of `service` (lambda, stepfunctions, s3, iam), made on first use."""
        attr = {"lambda": "lambda_", "stepfunctions": "sfn", "s3": "s3", "iam": "iam"}[service]
        if getattr(self, attr) is None:
            import boto3

            make: Any = boto3.client  # typed per literal service name; ours is a variable
            setattr(self, attr, make(service))
        return getattr(self, attr)


def dispatch(event: Mapping[str, Any], clients: Clients) -> dict[str, str]:
    kind = event["ResourceType"]
    request = event["RequestType"]
    props = event.get("ResourceProperties") or {}
    if kind == "Custom::CopierImage":
        return {} if request == "Delete" else copier_image(str(props["FunctionVersionArn"]), clients.get("lambda"))
    if kind == "Custom::StartExecution":
        if request == "Delete":
            return {}
        return start_execution(
            str(props["StateMachineArn"]), str(props.get("Input") or "{}"), clients.get("stepfunctions")
        )
    if kind == "Custom::EmptyBucket":
        if request == "Delete":
            log.info(
                "emptied %s: %d object(s) deleted",
                props["BucketName"],
                empty_bucket(str(props["BucketName"]), clients.get("s3")),
            )
        return {}
    if kind == "Custom::EcsServiceLinkedRole":
        return {} if request == "Delete" else ecs_service_linked_role(clients.get("iam"))
    raise ValueError(f"unknown custom resource type {kind}")


def handle(event: Mapping[str, Any], clients: Clients | None = None, send: Sender = send_response) -> None:
    clients = clients or Clients()
    physical_id = str(event.get("PhysicalResourceId") or f"{event['LogicalResourceId']}-{event['RequestId'][:8]}")
    log.info("%s %s (%s)", event["RequestType"], event["ResourceType"], event["LogicalResourceId"])
    try:
        data = dispatch(event, clients)
    except Exception as exc:
        log.exception("custom resource failed")
        send(event, "FAILED", physical_id, {}, f"{type(exc).__name__}: {exc}")
        return
    send(event, "SUCCESS", physical_id, data, "")
