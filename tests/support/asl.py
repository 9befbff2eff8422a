"""A small interpreter of the ASL (JSONPath dialect) our state machine uses, over a resolved template.

Enough of CloudFormation to resolve template.yaml for one set of stack parameters, and enough of
Step Functions to walk a definition: paths via jsonpath-ng, ResultSelector/ResultPath/OutputPath,
States.JsonToString and States.Format, Choice, a distributed Map with an S3 item reader and a
batcher, Catch. Retry is not simulated. Used by tests/unit/test_statemachine_contract.py.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str
from jsonpath_ng import parse as parse_jsonpath

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "ecr_replication.asl.json"
# One deployment, in the China partition on purpose: nothing may assume `aws`.
REGION = "cn-north-1"
ACCOUNT = "123456789012"
STACK = "DTHECRStack"
NO_VALUE = object()


# ---------------------------------------------------------------------------------------------
# template.yaml, resolved for one deployment
# ---------------------------------------------------------------------------------------------
class Stack:
    """Enough of CloudFormation to evaluate the properties this test needs."""

    def __init__(self, params: Mapping[str, str], resources: Mapping[str, Mapping[str, str]]) -> None:
        data, problems = decode_str((ROOT / "template.yaml").read_text(encoding="utf-8"))
        assert not problems, problems
        self.template: dict[str, Any] = dict(data)
        defaults = {k: str(v.get("Default", "")) for k, v in self.template["Parameters"].items()}
        unknown = set(params) - set(defaults)
        assert not unknown, f"not stack parameters: {unknown}"
        self.params = {**defaults, **params}
        self.resources = resources
        self.pseudo = {
            "AWS::Partition": "aws-cn",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com.cn",
        }

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        return self.resources.get(name, {}).get("Ref", f"ref:{name}")

    def getatt(self, name: str, attr: str) -> str:
        return self.resources.get(name, {}).get(attr, f"{name}.{attr}")

    def condition(self, name: str) -> bool:
        return bool(self._cond(self.template["Conditions"][name]))

    def _cond(self, expr: Any) -> Any:
        if isinstance(expr, dict) and len(expr) == 1:
            ((key, value),) = expr.items()
            if key == "Fn::Equals":
                return self.resolve(value[0]) == self.resolve(value[1])
            if key == "Fn::Not":
                return not self._cond(value[0])
            if key == "Fn::And":
                return all(self._cond(v) for v in value)
            if key == "Fn::Or":
                return any(self._cond(v) for v in value)
            if key == "Condition":
                return self.condition(value)
        return self.resolve(expr)

    def _sub(self, text: str, extra: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name:
                res, attr = name.split(".", 1)
                return self.getatt(res, attr)
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, value),) = node.items()
                if key == "Ref":
                    return self.ref(value)
                if key == "Fn::GetAtt":
                    res, attr = value if isinstance(value, list) else value.split(".", 1)
                    return self.getatt(res, attr)
                if key == "Fn::Sub":
                    if isinstance(value, list):
                        return self._sub(value[0], {k: self.resolve(v) for k, v in value[1].items()})
                    return self._sub(value, {})
                if key == "Fn::If":
                    return self.resolve(value[1] if self.condition(value[0]) else value[2])
                if key == "Fn::Select":
                    return self.resolve(value[1])[int(value[0])]
                if key == "Fn::GetAZs":
                    return [f"{REGION}a", f"{REGION}b"]
                if key == "Fn::Join":
                    return value[0].join(str(self.resolve(v)) for v in value[1])
            out = {k: self.resolve(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        return node

    def resource(self, name: str) -> dict[str, Any]:
        return dict(self.template["Resources"][name])

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


@dataclass
class Execution:
    services: Callable[[str, dict[str, Any]], Any]
    read_items: Callable[[dict[str, Any]], list[Any]]
    trace: list[str] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)

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
            value = get_path(rule["Variable"], data, {})
            if "NumericGreaterThan" in rule and value > rule["NumericGreaterThan"]:
                return str(rule["Next"])
            assert set(rule) <= {"Variable", "NumericGreaterThan", "Next"}, f"comparison not emulated: {rule}"
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
