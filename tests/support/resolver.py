"""template.yaml as CloudFormation deploys it, for one deployment: SAM's transform and the intrinsics.

`transformed(region)` runs SAM's own translator (aws-sam-translator, what CloudFormation runs for
`Transform: AWS::Serverless-2016-10-31`) in this process; `Resolver` evaluates Ref, Fn::Sub,
Fn::GetAtt, Fn::If with the Conditions, Fn::Select, Fn::GetAZs and Fn::Join for one set of stack
parameters, pseudo parameters of one partition/region/account, and the physical ids and attributes
a test gives for the stack's resources. What it does not know it leaves visible (`ref:Name`,
`Name.Attr`), so an unresolved reference shows up in an assertion instead of passing silently.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from support.cfn import ROOT, template

NO_VALUE = object()


def source_template() -> dict[str, Any]:
    """template.yaml before SAM's transform (support.cfn reads it)."""
    return template()


def transformed(region: str) -> dict[str, Any]:
    """The template after SAM's transform, as CloudFormation would deploy it in `region`."""
    from samtranslator.translator.arn_generator import ArnGenerator
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    class NoManagedPolicyLookup:
        def load(self) -> dict[str, str]:
            return {}

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://artifacts/{name}"  # what `sam package` puts there
    image = template["Resources"]["CopierImageFunction"]["Properties"]
    image["ImageUri"] = f"123456789012.dkr.ecr.{region}.amazonaws.com/copier@sha256:" + "0" * 64
    # The partition of SAM's managed policy ARNs, and its pseudo parameters, come from the region
    # it runs in (CloudFormation runs it in the stack's region).
    previous = ArnGenerator.BOTO_SESSION_REGION_NAME, os.environ.get("AWS_DEFAULT_REGION")
    ArnGenerator.BOTO_SESSION_REGION_NAME = region
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        result: dict[str, Any] = transform(template, {}, NoManagedPolicyLookup())
    finally:
        ArnGenerator.BOTO_SESSION_REGION_NAME = previous[0]
        if previous[1] is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous[1]
    return result


@dataclass(frozen=True)
class Deployment:
    """Where a stack is deployed: CloudFormation's pseudo parameters."""

    region: str
    account: str = "123456789012"
    stack: str = "DTHECRStack"

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else "aws"

    @property
    def url_suffix(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Partition": self.partition,
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack,
            "AWS::URLSuffix": self.url_suffix,
        }


class Resolver:
    """Enough of CloudFormation to evaluate the properties a test needs, for one deployment."""

    def __init__(
        self,
        template: Mapping[str, Any],
        params: Mapping[str, str],
        resources: Mapping[str, Mapping[str, str]],
        deployment: Deployment,
    ) -> None:
        self.template: dict[str, Any] = copy.deepcopy(dict(template))
        defaults = {k: str(v.get("Default", "")) for k, v in self.template["Parameters"].items()}
        unknown = set(params) - set(defaults)
        assert not unknown, f"not stack parameters: {unknown}"
        self.params = {**defaults, **params}
        self.resources = resources
        self.deployment = deployment
        self.pseudo = deployment.pseudo()

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
                    return [f"{self.deployment.region}a", f"{self.deployment.region}b"]
                if key == "Fn::Join":
                    return value[0].join(str(self.resolve(v)) for v in value[1])
            out = {k: self.resolve(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [v for v in (self.resolve(x) for x in node) if v is not NO_VALUE]
        return node

    def resource(self, name: str) -> dict[str, Any]:
        return dict(self.template["Resources"][name])

    def deployed(self) -> dict[str, dict[str, Any]]:
        """Every resource whose Condition holds, with its properties resolved."""
        found = {}
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            found[name] = {"Type": resource["Type"], "Properties": self.resolve(resource.get("Properties", {}))}
        return found
