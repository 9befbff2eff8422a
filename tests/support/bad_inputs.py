"""Loads tests/data/bad_inputs.yaml and turns one case into a config file (see that file's header)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parents[1] / "data" / "bad_inputs.yaml"
CORPUS: dict[str, Any] = yaml.safe_load(DATA.read_text(encoding="utf-8"))
HEX64 = "0123456789abcdef" * 4


def cases(kind: str) -> list[dict[str, Any]]:
    return [c for c in CORPUS["cases"] if c.get("kind", "config") == kind]


def placeholders(tmp: Path, **hosts: str) -> dict[str, str]:
    return {
        "tmp": str(tmp),
        "tag129": "t" * 129,
        "hex64": HEX64,
        "HEX64": HEX64.upper(),
        "long": "/".join(["a" * 50] * 5) + "/abcd",  # 259 characters, every component valid
        "prefix250": "/".join(["p" * 50] * 4) + "/" + "p" * 46,
        **hosts,
    }


def fill(value: Any, values: dict[str, str]) -> Any:
    """Placeholders in every string of a value. Plain replace: configs contain JSON braces."""
    if isinstance(value, str):
        for name, replacement in values.items():
            value = value.replace("{" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [fill(v, values) for v in value]
    if isinstance(value, dict):
        return {fill(k, values): fill(v, values) for k, v in value.items()}
    return value


def write_config(case: dict[str, Any], tmp: Path, values: dict[str, str], extra: dict[str, Any] | None = None) -> Path:
    """The case's config file (and side files); returns its path, which becomes {config}."""
    for name, text in (case.get("files") or {}).items():
        (tmp / name).write_text(fill(text, values), encoding="utf-8")
    if "config_path" in case:
        return Path(fill(case["config_path"], values))
    path = tmp / "transfer.yaml"
    if "config_bytes" in case:
        path.write_bytes(base64.b64decode(case["config_bytes"]))
    elif "config" in case:
        path.write_text(fill(case["config"], values), encoding="utf-8")
    else:
        settings = copy.deepcopy(CORPUS["base"])
        settings.update(extra or {})
        settings.update(case.get("set") or {})
        for key in case.get("unset") or []:
            settings.pop(key, None)
        path.write_text(yaml.safe_dump(fill(settings, values), sort_keys=False), encoding="utf-8")
    return path


def assert_json_error(out: str, stderr: str, code: int = 2) -> None:
    """`--json` on an error: one JSON object on stdout saying what stderr says, line for line."""
    doc = json.loads(out)
    assert doc["exit_code"] == code and doc["error"], doc
    prefix = f"{doc['source']}: " if doc["source"] else ""
    assert "error: " + "\n".join(prefix + p for p in doc["problems"]) == stderr.rstrip("\n")
