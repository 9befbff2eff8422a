"""The SAM CLI as the tests run it: its own venv (it pins an older boto3 than moto) and Python 3.12."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sam_cli() -> str | None:
    found = shutil.which("sam")
    if found:
        return found
    local = ROOT / ".venv-sam" / "bin" / "sam"
    return str(local) if local.exists() else None


def python312_env(base: dict[str, str] | None = None) -> dict[str, str] | None:
    """An environment in which `python3.12` runs: as is, or through pyenv's 3.12 (see FIELD-NOTES)."""
    env = {**(base if base is not None else os.environ), "SAM_CLI_TELEMETRY": "0"}
    for candidate in (env, {**env, "PYENV_VERSION": "3.11.7:3.12.1"}):
        try:
            found = subprocess.run(["python3.12", "--version"], env=candidate, capture_output=True, check=False)
        except FileNotFoundError:
            return None
        if found.returncode == 0:
            return candidate
    return None
