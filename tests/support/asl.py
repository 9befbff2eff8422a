"""A small interpreter of the ASL (JSONPath dialect) our state machine uses, over a resolved template.

Enough of CloudFormation to resolve template.yaml for one set of stack parameters, and enough of
Step Functions to walk a definition: paths via jsonpath-ng, ResultSelector/ResultPath/OutputPath,
States.JsonToString, Format, MathAdd, Array and ArrayGetItem, Choice (And/Or/Not, IsPresent,
numeric, BooleanEquals and StringMatches rules), Pass, Wait (recorded, not waited), a distributed Map with an S3
item reader and a batcher, Catch. Retry is not simulated. Used by tests/unit/test_statemachine_contract.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonpath_ng import parse as parse_jsonpath

from support.cfn import Deployment, Resolver, source_template

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "ecr_replication.asl.json"
# One deployment, in the China partition on purpose: nothing may assume `aws`.
REGION = "cn-north-1"
ACCOUNT = "123456789012"
STACK = "DTHECRStack"


# ---------------------------------------------------------------------------------------------
# template.yaml, resolved for one deployment
# ---------------------------------------------------------------------------------------------
class Stack(Resolver):
    """template.yaml resolved for one deployment in cn-north-1 (aws-cn)."""

    def __init__(self, params: Mapping[str, str], resources: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(source_template(), params, resources, Deployment(REGION, ACCOUNT, STACK))

    def function_env(self, name: str) -> dict[str, str]:
        env = dict(self.template["Globals"]["Function"]["Environment"]["Variables"])
        env.update(self.resource(name)["Properties"]["Environment"]["Variables"])
        return {k: str(v) for k, v in self.resolve(env).items()}

    def task_env(self) -> tuple[str, dict[str, str]]:
        container = self.resource("CopierTaskDefinition")["Properties"]["ContainerDefinitions"][0]
        env = self.resolve(container["Environment"])
        return container["Name"], {e["Name"]: str(e["Value"]) for e in env}

    def definition(self) -> dict[str, Any]:
        props = self.resource("ReplicationStateMachine")["Properties"]
        subs = self.resolve(props["DefinitionSubstitutions"])
        text = ASL_PATH.read_text(encoding="utf-8")
        for key, value in subs.items():
            text = text.replace("${" + key + "}", str(value))
        assert "${" not in text.replace("$${", ""), "a placeholder was left unsubstituted"
        definition: dict[str, Any] = json.loads(text)
        return definition


# ---------------------------------------------------------------------------------------------
# A small interpreter of the ASL (JSONPath) this definition uses
# ---------------------------------------------------------------------------------------------
class StatesError(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


def get_path(path: str, data: Any, context: Mapping[str, Any]) -> Any:
    if path.startswith("$$"):
        data, path = context, "$" + path[2:]
    if path == "$":
        return data
    found = parse_jsonpath(path).find(data)
    if not found:
        raise StatesError("States.Runtime", f"the JSONPath {path!r} could not be found in the input")
    return found[0].value


_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<fn>States\.[A-Za-z]+)\(|(?P<path>\$\$?[^,()\s]*)|(?P<num>-?\d+(?:\.\d+)?)|(?P<punct>[,)]))"
)


def intrinsic(expr: str, data: Any, context: Mapping[str, Any]) -> Any:
    tokens = [(m.lastgroup, m.group(m.lastgroup or "")) for m in _TOKEN.finditer(expr)]
    assert "".join(t for _, t in tokens).replace(" ", "") == re.sub(r"\s+", "", expr).replace("(", ""), expr
    pos = 0

    def value() -> Any:
        nonlocal pos
        kind, text = tokens[pos]
        pos += 1
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "path":
            return get_path(text, data, context)
        assert kind == "fn", expr
        args: list[Any] = []
        while tokens[pos][1] != ")":
            args.append(value())
            if tokens[pos][1] == ",":
                pos += 1
        pos += 1
        return call(text, args)

    def call(name: str, args: list[Any]) -> Any:
        if name == "States.JsonToString":
            return json.dumps(args[0], separators=(",", ":"))
        if name == "States.Format":
            template, rest = args[0], iter(args[1:])
            return re.sub(r"\{\}", lambda _: _fmt(next(rest)), template)
        if name == "States.MathAdd":
            assert all(isinstance(a, int) for a in args) and len(args) == 2, args
            return args[0] + args[1]
        if name == "States.Array":
            return list(args)
        if name == "States.ArrayGetItem":
            if not 0 <= args[1] < len(args[0]):
                raise StatesError("States.Runtime", f"index {args[1]} is out of bounds of {args[0]}")
            return args[0][args[1]]
        raise AssertionError(f"intrinsic {name} is not emulated: add it here before using it")

    result = value()
    assert pos == len(tokens), f"trailing tokens in {expr!r}"
    return result


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(node: Any, data: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key.endswith(".$"):
                out[key[:-2]] = (
                    intrinsic(value, data, context) if value.startswith("States.") else get_path(value, data, context)
                )
            else:
                out[key] = render(value, data, context)
        return out
    if isinstance(node, list):
        return [render(v, data, context) for v in node]
    return node


def put_result(data: Any, result: Any, path: str | None) -> Any:
    if path is None:
        return data
    if path == "$":
        return result
    out = copy.deepcopy(data)
    keys = path[2:].split(".")
    target = out
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = result
    return out


def _glob(pattern: str) -> re.Pattern[str]:
    """StringMatches: `*` is any run of characters, `\\*` a literal star."""
    parts = re.split(r"(\\\*|\*)", pattern)
    return re.compile("".join(".*" if p == "*" else re.escape("*" if p == "\\*" else p) for p in parts), re.S)


def matches(rule: Mapping[str, Any], data: Any) -> bool:
    """One Choice rule. A missing Variable is a States.Runtime error, as in Step Functions,
    except under IsPresent; And/Or stop at the first rule that decides them."""
    if "And" in rule:
        return all(matches(r, data) for r in rule["And"])
    if "Or" in rule:
        return any(matches(r, data) for r in rule["Or"])
    if "Not" in rule:
        return not matches(rule["Not"], data)
    ops = set(rule) - {"Variable", "Next"}
    assert len(ops) == 1, f"one comparison per rule: {rule}"
    (op,) = ops
    if op == "IsPresent":
        return bool(parse_jsonpath(rule["Variable"]).find(data)) == rule["IsPresent"]
    value = get_path(rule["Variable"], data, {})
    expected = rule[op]
    if op == "NumericGreaterThan":
        return isinstance(value, int | float) and value > expected
    if op == "NumericLessThan":
        return isinstance(value, int | float) and value < expected
    if op == "BooleanEquals":
        return isinstance(value, bool) and value is expected
    if op == "StringMatches":
        return isinstance(value, str) and _glob(expected).fullmatch(value) is not None
    raise AssertionError(f"comparison not emulated: {rule}")


@dataclass
class Execution:
    services: Callable[[str, dict[str, Any]], Any]
    read_items: Callable[[dict[str, Any]], list[Any]]
    trace: list[str] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)

    def run(self, machine: Mapping[str, Any], data: Any, context: dict[str, Any]) -> tuple[str, Any]:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            self.trace.append(name)
            kind = state["Type"]
            if kind == "Succeed":
                return "SUCCEEDED", data
            if kind == "Fail":
                return "FAILED", {"Error": state["Error"], "Cause": state["Cause"]}
            if kind == "Choice":
                name = self._choose(state, data)
                continue
            if kind == "Pass":
                result = render(state["Parameters"], data, context) if "Parameters" in state else data
                data = put_result(data, result, state.get("ResultPath", "$"))
                name = state["Next"]
                continue
            if kind == "Wait":
                seconds = get_path(state["SecondsPath"], data, context) if "SecondsPath" in state else state["Seconds"]
                assert isinstance(seconds, int) and seconds >= 0, seconds
                self.waits.append(seconds)
                name = state["Next"]
                continue
            try:
                result = self._task(state, data, context) if kind == "Task" else self._map(state, data, context)
            except StatesError as error:
                catcher = next(
                    (
                        c
                        for c in state.get("Catch", [])
                        if error.error in c["ErrorEquals"] or "States.ALL" in c["ErrorEquals"]
                    ),
                    None,
                )
                if catcher is None:
                    raise
                data = put_result(data, {"Error": error.error, "Cause": error.cause}, catcher.get("ResultPath", "$"))
                name = catcher["Next"]
                continue
            if "ResultSelector" in state:
                result = render(state["ResultSelector"], result, context)
            data = put_result(data, result, state.get("ResultPath", "$"))
            if "OutputPath" in state:
                data = {} if state["OutputPath"] is None else get_path(state["OutputPath"], data, context)
            if state.get("End"):
                return "SUCCEEDED", data
            name = state["Next"]

    @staticmethod
    def _choose(state: Mapping[str, Any], data: Any) -> str:
        for rule in state["Choices"]:
            if matches(rule, data):
                return str(rule["Next"])
        return str(state["Default"])

    def _task(self, state: Mapping[str, Any], data: Any, context: dict[str, Any]) -> Any:
        params = render(state["Parameters"], data, context) if "Parameters" in state else data
        # Everything crosses Step Functions as JSON.
        return json.loads(json.dumps(self.services(state["Resource"], json.loads(json.dumps(params)))))

    def _map(self, state: Mapping[str, Any], data: Any, context: dict[str, Any]) -> Any:
        reader = state["ItemReader"]
        assert reader["ReaderConfig"]["InputType"] == "JSON"
        items = self.read_items({"Resource": reader["Resource"], **render(reader["Parameters"], data, context)})
        batcher = state["ItemBatcher"]
        batch_input = render(batcher["BatchInput"], data, context)
        per_batch = get_path(batcher["MaxItemsPerBatchPath"], data, context)
        assert isinstance(per_batch, int) and per_batch >= 1
        concurrency = get_path(state["MaxConcurrencyPath"], data, context)
        assert isinstance(concurrency, int) and concurrency >= 1
        children: list[dict[str, Any]] = []
        current: list[Any] = []
        for item in items:
            candidate = {"BatchInput": batch_input, "Items": [*current, item]}
            too_big = len(json.dumps(candidate, separators=(",", ":"))) > batcher["MaxInputBytesPerBatch"]
            if current and (len(current) >= per_batch or too_big):
                children.append({"BatchInput": batch_input, "Items": current})
                current = []
            current.append(item)
        if current:
            children.append({"BatchInput": batch_input, "Items": current})
        self.batches.extend(children)
        results = []
        for n, child in enumerate(children):
            child_context = {**context, "Execution": {**context["Execution"], "Name": f"child-{n}"}}
            status, output = self.run(state["ItemProcessor"], child, child_context)
            if status != "SUCCEEDED":
                raise StatesError("States.ExceedToleratedFailureThreshold", json.dumps(output))
            results.append(output)
        return results
