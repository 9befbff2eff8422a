"""The on-push resources of template.yaml, against the event files the handler tests use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ecr_transfer import envvars
from support.asl import ACCOUNT, ROOT, Stack

EVENTS = ROOT / "events"
ON_PUSH = {"sourceType": "Amazon_ECR", "srcList": "ALL", "srcRegion": "us-west-2", "onPush": "true"}


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching for the pattern forms used here: lists of exact values, nested keys."""
    if isinstance(pattern, list):
        return event in pattern
    return isinstance(event, dict) and all(k in event and matches(v, event[k]) for k, v in pattern.items())


def bodies(name: str) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in json.loads((EVENTS / name).read_text())["Records"]]


def test_every_push_resource_exists_only_with_on_push() -> None:
    resources = Stack({}, {}).template["Resources"]
    push = {name: r for name, r in resources.items() if name.startswith("Push")}
    assert len(push) >= 7
    assert {name: r.get("Condition") for name, r in push.items()} == {
        name: "PushFromOtherAccount" if name == "PushBusPolicy" else "PushEnabled" for name in push
    }
    assert not Stack({"onPush": "true", "sourceType": "Public", "srcList": "SELECTED"}, {}).condition("PushEnabled")
    assert not Stack({**ON_PUSH, "onPush": "false"}, {}).condition("PushEnabled")


def test_the_push_rule_takes_successful_pushes_of_the_source_registry_only() -> None:
    same = Stack(ON_PUSH, {})
    pattern = same.resolve(same.resource("PushRule")["Properties"]["EventPattern"])
    assert all(matches(pattern, e) for e in bodies("push_same_account.json"))
    assert not any(matches(pattern, e) for e in bodies("push_forwarded.json"))  # another account's
    failed = bodies("push_same_account.json")[0]
    failed["detail"]["result"] = "FAILURE"
    assert not matches(pattern, failed)
    assert not same.condition("PushFromOtherAccount")

    other = Stack({**ON_PUSH, "srcAccountId": "111122223333"}, {})
    pattern = other.resolve(other.resource("PushRule")["Properties"]["EventPattern"])
    assert all(matches(pattern, e) for e in bodies("push_forwarded.json"))
    assert other.condition("PushFromOtherAccount")
    statement = other.resolve(other.resource("PushBusPolicy")["Properties"]["Statement"])
    assert statement["Principal"] == {"AWS": "arn:aws-cn:iam::111122223333:root"}
    assert statement["Action"] == "events:PutEvents"


@pytest.mark.parametrize("account", ["", ACCOUNT])
def test_the_intake_function_gets_what_its_handler_reads(account: str) -> None:
    stack = Stack({**ON_PUSH, "srcAccountId": account}, {"ReplicationStateMachine": {"Ref": "arn:sm"}})
    env = stack.function_env("PushIntakeFunction")
    handler = (ROOT / "src" / "push_intake" / "app.py").read_text()
    for name in ("STATE_MACHINE_ARN", "SRC_ACCOUNT_ID", "SRC_REGION"):
        assert f"envvars.{name}" in handler
    assert env[envvars.STATE_MACHINE_ARN] == "arn:sm"
    assert (env[envvars.SRC_ACCOUNT_ID], env[envvars.SRC_REGION]) == (ACCOUNT, "us-west-2")
    mapping = stack.resource("PushIntakeEventSource")["Properties"]
    # A burst coalesces: up to 100 pushes after a 20-second window make one execution.
    assert (mapping["BatchSize"], mapping["MaximumBatchingWindowInSeconds"]) == (100, 20)
