"""The one typed settings model, loaded from a YAML file (CLI) or environment variables (cloud).

Keys are the Data Transfer Hub stack parameter names users already know. Every problem is
collected and reported at once; unknown keys are errors, so a typo never silently does nothing.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from ecr_transfer import envvars
from ecr_transfer.artifacttypes import parse_referrer_types
from ecr_transfer.errors import ConfigError
from ecr_transfer.references import _COMPONENT, _HOST, parse_image_list
from ecr_transfer.subsets import parse_platforms
from ecr_transfer.tagfilter import TagFilters, VersionRange, check_patterns, split_patterns

SourceType = Literal["Amazon_ECR", "Public"]
DestType = Literal["Amazon_ECR", "Registry"]
SrcList = Literal["ALL", "SELECTED"]

_ACCOUNT = re.compile(r"[0-9]{12}\Z")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+\Z")
_ROLE_ARN = re.compile(r"arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+\Z")
_PLACEHOLDER_ECR_HOST = "000000000000.dkr.ecr.invalid"


@dataclass(frozen=True, slots=True)
class RepositorySettings:
    """How a missing ECR destination repository is created."""

    tag_mutability: Literal["MUTABLE", "IMMUTABLE"] = "MUTABLE"
    scan_on_push: bool = False
    encryption: Literal["AES256", "KMS"] = "AES256"
    kms_key: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Settings:
    source_type: SourceType = "Public"
    src_list: SrcList = "SELECTED"
    src_image_list: str = ""
    src_region: str | None = None
    src_account_id: str | None = None
    src_credential: str | None = None
    src_role_arn: str | None = None
    src_external_id: str | None = None
    dest_type: DestType = "Amazon_ECR"
    dest_registry: str | None = None
    dest_region: str | None = None
    dest_account_id: str | None = None
    dest_prefix: str = ""
    dest_credential: str | None = None
    dest_role_arn: str | None = None
    dest_external_id: str | None = None
    include_untagged: bool = True
    insecure_registries: tuple[str, ...] = ()
    registry_endpoints: Mapping[str, str] = field(default_factory=dict)
    registry_ca_bundles: Mapping[str, str] = field(default_factory=dict)
    """host[:port] -> CA bundle (a path, or the PEM text) trusted for that registry, by Python and skopeo."""
    concurrency: int = 10
    repository: RepositorySettings = field(default_factory=RepositorySettings)
    tag_include: tuple[str, ...] = ()
    tag_exclude: tuple[str, ...] = ()
    tag_semver: str | None = None
    tag_latest: int | None = None
    platforms: tuple[str, ...] = ()
    """Copy only these children of a multi-arch index (`linux/arm64`), under a new index; () for all."""
    copy_referrers: bool = True
    """Signatures, SBOMs and attestations of each image travel with it (ecr_transfer.referrers)."""
    referrer_types: tuple[str, ...] = ()
    """Only referrers of these artifact types travel (ecr_transfer.artifacttypes); () for every one."""

    @property
    def tag_filters(self) -> TagFilters:
        """What applies to expanded tags (`repo:ALL_TAGS`, `srcList: ALL`); see ecr_transfer.tagfilter."""
        return TagFilters(
            include=self.tag_include, exclude=self.tag_exclude, semver=self.tag_semver, latest=self.tag_latest
        )

    @property
    def copies_subset(self) -> bool:
        """Only part of a multi-arch index lands (includeUntagged false, or `platforms`): the destination
        digest differs from the source's on purpose, and the ledger pairs the two."""
        return not self.include_untagged or bool(self.platforms)

    def is_insecure(self, registry: str) -> bool:
        return registry in self.insecure_registries


# camelCase key (YAML and stack parameter) -> attribute name, and how to coerce the raw value.
_KEYS: dict[str, tuple[str, str]] = {
    "sourceType": ("source_type", "enum:Amazon_ECR,Public"),
    "srcList": ("src_list", "enum:ALL,SELECTED"),
    "srcImageList": ("src_image_list", "list_text"),
    "srcRegion": ("src_region", "region"),
    "srcAccountId": ("src_account_id", "account"),
    "srcCredential": ("src_credential", "str"),
    "srcRoleArn": ("src_role_arn", "role"),
    "srcExternalId": ("src_external_id", "str"),
    "destType": ("dest_type", "enum:Amazon_ECR,Registry"),
    "destRegistry": ("dest_registry", "host"),
    "destRegion": ("dest_region", "region"),
    "destAccountId": ("dest_account_id", "account"),
    "destPrefix": ("dest_prefix", "prefix"),
    "destCredential": ("dest_credential", "str"),
    "destRoleArn": ("dest_role_arn", "role"),
    "destExternalId": ("dest_external_id", "str"),
    "includeUntagged": ("include_untagged", "bool"),
    "insecureRegistries": ("insecure_registries", "hosts"),
    "registryEndpoints": ("registry_endpoints", "endpoints"),
    "registryCaBundles": ("registry_ca_bundles", "endpoints"),
    "concurrency": ("concurrency", "int:1-100"),
    "repoTagMutability": ("tag_mutability", "enum:MUTABLE,IMMUTABLE"),
    "repoScanOnPush": ("scan_on_push", "bool"),
    "repoEncryption": ("encryption", "enum:AES256,KMS"),
    "repoKmsKey": ("kms_key", "str"),
    "repoTags": ("tags", "tags"),
    "tagInclude": ("tag_include", "regexes"),
    "tagExclude": ("tag_exclude", "regexes"),
    "tagSemver": ("tag_semver", "range"),
    "tagLatest": ("tag_latest", "count"),
    "platforms": ("platforms", "platforms"),
    "copyReferrers": ("copy_referrers", "bool"),
    "referrerTypes": ("referrer_types", "media_types"),
}
_REPO_FIELDS = {f.name for f in fields(RepositorySettings)}


def env_name(key: str) -> str:
    """`srcImageList` -> `SRC_IMAGE_LIST`: the environment variable carrying a setting."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).upper()


ENV_NAMES = {env_name(k): k for k in _KEYS}
assert envvars.SRC_IMAGE_LIST in ENV_NAMES and envvars.REGISTRY_ENDPOINTS in ENV_NAMES
assert {
    envvars.TAG_INCLUDE,
    envvars.TAG_EXCLUDE,
    envvars.TAG_SEMVER,
    envvars.TAG_LATEST,
    envvars.PLATFORMS,
    envvars.COPY_REFERRERS,
    envvars.REFERRER_TYPES,
} <= ENV_NAMES.keys()
assert envvars.REGISTRY_CA_BUNDLES in ENV_NAMES


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "1", "on"}:
        return True
    if text in {"false", "no", "0", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value]
    raise ValueError(f"expected a list, got {type(value).__name__}")


def _as_mapping(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        else:
            pairs = [p.split("=", 1) for p in _as_list(text)]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("expected key=value pairs separated by commas, or a JSON object")
            value = dict(pairs)
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {type(value).__name__}")
    return {str(k): str(v) for k, v in value.items()}


def _coerce(kind: str, value: Any) -> Any:
    if kind.startswith("enum:"):
        allowed = kind[5:].split(",")
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return value
    if kind == "bool":
        return _as_bool(value)
    if kind.startswith("int:"):
        low, high = (int(x) for x in kind[4:].split("-"))
        # int() would take `true` as 1 and 2.5 as 2: a typo must not become a setting.
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"must be between {low} and {high}; got {number}")
        return number
    if kind == "list_text":
        if not isinstance(value, str | list | tuple):
            raise ValueError(f"expected a list or comma/newline-separated text, got {type(value).__name__}")
        return "\n".join(_as_list(value)) if isinstance(value, list | tuple) else value
    if kind == "hosts":
        hosts = _as_list(value)
        bad = [h for h in hosts if not _HOST.match(h)]
        if bad:
            raise ValueError(f"not a host[:port]: {', '.join(bad)}")
        return tuple(hosts)
    if kind in {"endpoints", "tags"}:
        return _as_mapping(value)
    if kind == "platforms":
        return parse_platforms(value)
    if kind == "media_types":
        return parse_referrer_types(value)
    if kind == "regexes":
        return check_patterns(split_patterns(value))
    if kind == "range":
        return VersionRange.parse(str(value)).text
    if kind == "count":
        if isinstance(value, bool) or not re.fullmatch(r"\s*[0-9]+\s*", str(value)) or int(str(value)) < 1:
            raise ValueError(f"must be a whole number of at least 1; got {value!r}")
        return int(str(value))
    text = str(value).strip()
    if kind == "region" and not _REGION.match(text):
        raise ValueError(f"not an AWS region name: {text!r}")
    if kind == "account" and not _ACCOUNT.match(text):
        raise ValueError(f"must be a 12-digit AWS account id; got {text!r}")
    if kind == "role" and not _ROLE_ARN.match(text):
        raise ValueError(f"not an IAM role ARN: {text!r}")
    if kind == "host" and not _HOST.match(text):
        raise ValueError(f"not a host[:port]: {text!r}")
    if kind == "prefix":
        text = text.strip("/")
        bad = [c for c in text.split("/") if not _COMPONENT.match(c)] if text else []
        if bad:
            raise ValueError(
                f"{text!r} would make invalid repository names (components must be lowercase letters, "
                "digits and single separators . _ -)"
            )
    return text or None if kind != "prefix" else text


def from_mapping(raw: Mapping[str, Any], source: str = "settings") -> Settings:
    """Build and validate Settings from camelCase keys; raise ConfigError listing every problem."""
    problems: list[str] = []
    top: dict[str, Any] = {}
    repo: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KEYS:
            close = [ENV_NAMES[key]] if key in ENV_NAMES else difflib.get_close_matches(str(key), list(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown setting {key!r}{hint}")
            continue
        if value is None or (isinstance(value, str) and not value.strip() and key != "srcImageList"):
            continue
        attr, kind = _KEYS[key]
        try:
            coerced = _coerce(kind, value)
        except (ValueError, json.JSONDecodeError) as exc:
            problems.append(f"{key}: {exc}")
            continue
        (repo if attr in _REPO_FIELDS else top)[attr] = coerced
    if problems:
        raise ConfigError(problems, source=source)
    settings = Settings(**top, repository=RepositorySettings(**repo))
    validate(settings, source)
    return settings


def validate(settings: Settings, source: str = "settings") -> None:
    """Cross-field rules; raises ConfigError with every problem found."""
    problems: list[str] = []
    if settings.source_type == "Amazon_ECR" and not settings.src_region:
        problems.append("srcRegion is required when sourceType is Amazon_ECR")
    if settings.source_type == "Public" and settings.src_list == "ALL":
        problems.append(
            "srcList ALL needs sourceType Amazon_ECR (public registries cannot be enumerated); "
            "use srcList SELECTED with srcImageList, and repo:ALL_TAGS for every tag of a repository"
        )
    if settings.dest_type == "Amazon_ECR" and not settings.dest_region:
        problems.append("destRegion is required when destType is Amazon_ECR")
    if settings.dest_type == "Registry" and not settings.dest_registry:
        problems.append("destRegistry (host[:port]) is required when destType is Registry")
    if settings.platforms and not settings.include_untagged:
        problems.append("platforms needs includeUntagged true (includeUntagged false copies linux/amd64 only)")
    if settings.referrer_types and not settings.copy_referrers:
        problems.append("referrerTypes needs copyReferrers true (copyReferrers false copies no referrer)")
    if settings.repository.encryption == "KMS" and not settings.repository.kms_key:
        problems.append("repoKmsKey is required when repoEncryption is KMS")
    if settings.src_list == "SELECTED":
        if not settings.src_image_list.strip():
            problems.append("srcImageList is empty but srcList is SELECTED")
        else:
            default = _PLACEHOLDER_ECR_HOST if settings.source_type == "Amazon_ECR" else None
            try:
                parse_image_list(settings.src_image_list, default)
            except ConfigError as exc:
                problems.extend(
                    f"srcImageList {p}" if p.startswith("line ") else f"srcImageList: {p}" for p in exc.problems
                )
    if problems:
        raise ConfigError(problems, source=source)


def load_yaml(path: str | Path) -> Settings:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=name) from None
    except UnicodeDecodeError as exc:
        bad = exc.object[exc.start]
        raise ConfigError(
            f"cannot read config file: not UTF-8 text (byte 0x{bad:02x} at offset {exc.start})", source=name
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}not valid YAML: {problem}", source=name) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of settings, got {type(raw).__name__}", source=name)
    return from_mapping(raw, source=name)


def env_count(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    """A whole-number runtime knob of at least 1; a bad value is a ConfigError naming the variable."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name}={value!r}: must be a whole number of at least 1", source="environment")
    return int(value)


def load_env(
    environ: Mapping[str, str] | None = None,
    image_list_loader: Callable[[str], str] | None = None,
) -> Settings:
    """Settings from environment variables (Lambda / Fargate); unknown ones are simply not ours.

    When SRC_IMAGE_LIST_PARAMETER names an SSM parameter and SRC_IMAGE_LIST is not set, the
    selected list is read through `image_list_loader` (the cloud glue passes Powertools Parameters).
    REGISTRY_CA_PARAMETER likewise holds registryCaBundles (a JSON object of PEM texts), which would
    not fit in a Lambda's 4 KB of environment.
    """
    env = os.environ if environ is None else environ
    raw: dict[str, Any] = {key: env[name] for name, key in ENV_NAMES.items() if name in env}
    param = env.get(envvars.SRC_IMAGE_LIST_PARAMETER)
    if param and not raw.get("srcImageList") and image_list_loader is not None:
        raw["srcImageList"] = image_list_loader(param)
    cas = env.get(envvars.REGISTRY_CA_PARAMETER, "").strip()
    if cas and not raw.get("registryCaBundles") and image_list_loader is not None:
        raw["registryCaBundles"] = _ca_parameter(cas, image_list_loader(cas))
    return from_mapping(raw, source="environment")


def _ca_parameter(name: str, value: str) -> dict[str, str]:
    """The CA bundles kept in SSM parameter `name`; a malformed value is a ConfigError naming it."""
    where = f"SSM parameter {name} ({envvars.REGISTRY_CA_PARAMETER})"
    try:
        bundles = _as_mapping(value)
    except ValueError as exc:
        expected = "expected a JSON object of host[:port] to PEM text"
        raise ConfigError(f"{where}: {exc}; {expected}", source="environment") from None
    bad = [host for host, pem in bundles.items() if "-----BEGIN CERTIFICATE-----" not in pem]
    if bad:
        raise ConfigError(f"{where}: no PEM certificate for {', '.join(sorted(bad))}", source="environment")
    return bundles
