"""The IAM decision tests/support/iam_policy.py makes for the IAM-enforced integration tests."""

from __future__ import annotations

import pytest

from support.iam_policy import Check, condition_holds, decide

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/ledger"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234"


def doc(*statements: dict[str, object]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_allow_needs_action_and_resource_to_match() -> None:
    policy = doc({"Effect": "Allow", "Action": ["dynamodb:Query", "dynamodb:PutItem"], "Resource": TABLE})
    assert decide([policy], Check("dynamodb:Query", TABLE)) == "allow"
    assert decide([policy], Check("DynamoDB:query", TABLE)) == "allow", "actions are case-insensitive"
    assert decide([policy], Check("dynamodb:Scan", TABLE)) == "implicit-deny"
    assert decide([policy], Check("dynamodb:Query", TABLE + "/index/ByItemType")) == "implicit-deny"


def test_wildcards_and_explicit_deny() -> None:
    policy = doc(
        {"Effect": "Allow", "Action": "ecr:*", "Resource": "arn:aws:ecr:*:123456789012:repository/mirror*"},
        {"Effect": "Deny", "Action": "ecr:PutImage", "Resource": "arn:aws:ecr:*:*:repository/mirror/locked"},
    )
    assert decide([policy], Check("ecr:PutImage", "arn:aws:ecr:us-east-1:123456789012:repository/mirror/a")) == "allow"
    assert decide([policy], Check("ecr:PutImage", "arn:aws:ecr:us-east-1:123456789012:repository/mirror/locked")) == (
        "deny"
    )
    assert decide([policy], Check("ecr:PutImage", "arn:aws:ecr:us-east-1:123456789012:repository/other")) == (
        "implicit-deny"
    )
    secret = doc(
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "arn:aws:sm:secret:s-??????"}
    )
    assert decide([secret], Check("secretsmanager:GetSecretValue", "arn:aws:sm:secret:s-AbC123")) == "allow"
    assert decide([secret], Check("secretsmanager:GetSecretValue", "arn:aws:sm:secret:s-AbC12")) == "implicit-deny"


def test_conditions_need_their_key_in_the_request() -> None:
    via = {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    policy = doc({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY, "Condition": via})
    assert decide(
        [policy], Check("kms:Decrypt", KEY, {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"})
    ) == ("allow")
    assert decide([policy], Check("kms:Decrypt", KEY)) == "implicit-deny", "a direct call carries no kms:ViaService"
    assert decide([policy], Check("kms:Decrypt", KEY, {"kms:ViaService": "s3.us-east-1.amazonaws.com"})) == (
        "implicit-deny"
    )
    assert condition_holds({"StringEqualsIfExists": {"ecs:cluster": "c"}}, {})
    assert condition_holds(
        {"ArnLike": {"ecs:cluster": "arn:aws:ecs:*:*:cluster/c"}}, {"ecs:cluster": "arn:aws:ecs:r:1:cluster/c"}
    )


def test_an_operator_not_modelled_is_an_error_not_a_pass() -> None:
    with pytest.raises(AssertionError, match="NumericLessThan"):
        condition_holds({"NumericLessThan": {"aws:MultiFactorAuthAge": "3600"}}, {"aws:MultiFactorAuthAge": "1"})
