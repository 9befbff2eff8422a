"""IAM's decision for one request, from identity policies: explicit Deny, else Allow, else implicit deny.

What the tests need of IAM's evaluation logic, and no more: Action/NotAction and Resource/NotResource
with `*` and `?` wildcards (actions case-insensitive), and the condition operators the template
uses (StringEquals, StringLike, ArnEquals, ArnLike, Bool, each with ...IfExists). A condition key
the request does not carry fails the condition, as in IAM. An operator not listed here is an
error, so a new kind of grant cannot pass unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["allow", "deny", "implicit-deny"]


@dataclass(frozen=True)
class Check:
    """One authorization IAM makes for a request: an action on a resource, with context keys."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


def _glob(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


_OPERATORS = {
    "StringEquals": lambda expected, actual: actual == expected,
    "StringLike": lambda expected, actual: _glob(expected, actual),
    "ArnEquals": lambda expected, actual: actual == expected,
    "ArnLike": lambda expected, actual: _glob(expected, actual),
    "Bool": lambda expected, actual: str(actual).lower() == str(expected).lower(),
}


def condition_holds(condition: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    keys = {k.lower(): v for k, v in context.items()}
    for operator, pairs in condition.items():
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS:
            raise AssertionError(f"condition operator {operator} is not evaluated here: add it first")
        for key, expected in pairs.items():
            actual = keys.get(key.lower())
            if actual is None:
                if operator.endswith("IfExists"):
                    continue
                return False
            if not any(_OPERATORS[base](str(e), actual) for e in _as_list(expected)):
                return False
    return True


def _applies(statement: Mapping[str, Any], check: Check) -> bool:
    if "Action" in statement:
        action_ok = any(_glob(a, check.action, ignore_case=True) for a in _as_list(statement["Action"]))
    else:
        action_ok = not any(_glob(a, check.action, ignore_case=True) for a in _as_list(statement["NotAction"]))
    if not action_ok:
        return False
    if "Resource" in statement:
        resource_ok = any(_glob(r, check.resource) for r in _as_list(statement["Resource"]))
    else:
        resource_ok = not any(_glob(r, check.resource) for r in _as_list(statement["NotResource"]))
    return resource_ok and condition_holds(statement.get("Condition", {}), check.context)


def decide(documents: Iterable[Mapping[str, Any]], check: Check) -> Decision:
    allowed = False
    for document in documents:
        for statement in _as_list(document["Statement"]):
            if _applies(statement, check):
                if statement["Effect"] == "Deny":
                    return "deny"
                allowed = True
    return "allow" if allowed else "implicit-deny"
