"""The IAM grants template.yaml makes, as the least-privilege tests read them.

Both branches of every Fn::If; every identity statement; `violations`, the rule set
test_iam_policies applies to the whole template. The document itself is support.cfn's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from support.cfn import source_template

STAR_RESOURCE_ACTIONS = {
    # No resource type: grantable only on "*".
    "ecr:GetAuthorizationToken",
    # CloudWatch Logs delivery for state machine logging: documented with "*" by Step Functions.
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def branches(node: Any) -> Iterator[Any]:
    """Every concrete value a node can take: both sides of Fn::If, without AWS::NoValue."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        for side in node["Fn::If"][1:]:
            yield from branches(side)
    elif node != {"Ref": "AWS::NoValue"}:
        yield node


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """(resource name, statement) for every identity policy the template grants."""
    for name, resource in source_template()["Resources"].items():
        props = resource.get("Properties", {})
        documents: list[Any] = []
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            documents = [p for p in props.get("Policies", []) if isinstance(p, dict) and "Statement" in p]
            assert all(isinstance(p, dict) for p in props.get("Policies", [])), f"{name}: only inline statements"
        elif resource["Type"] == "AWS::IAM::Role":
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
            assert not props.get("ManagedPolicyArns"), f"{name}: managed policies are broader than needed"
        elif resource["Type"] == "AWS::IAM::Policy":
            # One document for several roles (CopyImagesPolicy): its statements are each role's.
            for role in props["Roles"]:
                for entry in props["PolicyDocument"]["Statement"]:
                    for statement in branches(entry):
                        yield role["Ref"], statement
        for document in documents:
            for entry in document["Statement"]:
                for statement in branches(entry):
                    yield name, statement


def role_documents(resources: dict[str, dict[str, Any]], role: str) -> list[dict[str, Any]]:
    """The policy documents a role holds in resolved resources: its inline policies, and every
    AWS::IAM::Policy attached to it (CopyImagesPolicy: the task role's and the copier function's)."""
    documents = [p["PolicyDocument"] for p in resources[role]["Properties"].get("Policies", [])]
    names = {role, f"ref:{role}"}  # a resolved Ref: the role's name, or the resolver's stand-in
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy" and names & set(map(str, resource["Properties"]["Roles"])):
            documents.append(resource["Properties"]["PolicyDocument"])
    return documents


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


# -- every grant anywhere in the template (issue 6) -------------------------------------------------
# test_iam_policies reads the policies where this template keeps them today; this reads every policy
# document in any resource, so a grant added elsewhere (an AWS::IAM::Policy or ManagedPolicy, a
# SAM policy template, a resource policy) meets the same rules, and NotAction/NotResource, which
# grant "everything except", are refused outright.
def violations(tpl: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def documents(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            if isinstance(node.get("Statement"), list):
                yield path, node
            for key, value in node.items():
                yield from documents(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from documents(value, f"{path}[{i}]")

    for name, resource in tpl["Resources"].items():
        props = resource.get("Properties", {})
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            for policy in as_list(props.get("Policies", [])):
                if not (isinstance(policy, dict) and "Statement" in policy):
                    found.append(f"{name}: policy {policy!r} is not an inline statement list")
        for path, document in documents(props, name):
            trust = ".AssumeRolePolicyDocument" in path
            for entry in document["Statement"]:
                for statement in branches(entry):
                    for key in ("NotAction", "NotResource", "NotPrincipal"):
                        if key in statement and statement.get("Effect") == "Allow":
                            found.append(f"{path}: Allow with {key}")
                    if statement.get("Effect") != "Allow" or trust:
                        continue
                    actions = as_list(statement.get("Action", []))
                    for action in actions:
                        if not (isinstance(action, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action)):
                            found.append(f"{path}: wildcard or malformed action {action!r}")
                    if "*" in as_list(statement.get("Resource", [])):
                        extra = sorted(set(actions) - STAR_RESOURCE_ACTIONS)
                        if extra:
                            found.append(f"{path}: {extra} granted on every resource")
    return found
