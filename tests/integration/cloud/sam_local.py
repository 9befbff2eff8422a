"""`sam local invoke` as the cloud tests run it: the events in events/, a template pointing the
functions at moto on the Docker bridge, and the answer (plus the function's logs) read back.

SAM runs Lambda containers on Docker's default bridge (with `--docker-network host` it cannot
reach the emulator it started), so moto and the registries' ECR front doors listen on the
bridge's gateway address: the host's own side of a bridge only this engine's containers are on.
`sam local invoke --env-vars` only sets variables the template declares, so AWS_ENDPOINT_URL (and
for the copier function the registry settings) are added to a copy of the built template;
without it boto3 in the container would go for the real AWS endpoints.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from support.sam import ROOT, python312_env, sam_cli

from ..ecr_support import ACCOUNT_A
from ..handler_support import STATE_MACHINE
from .conftest import BuiltApp

EVENTS = ROOT / "events"
BUCKET = "dthecrstack-work"
TABLE = "DTHECRStack-ledger"
PARAMETERS = {"sourceType": "Amazon_ECR", "srcList": "ALL", "srcRegion": "us-west-2", "onPush": "true"}
STATE_MACHINE_ARN = f"arn:aws:states:us-east-1:{ACCOUNT_A}:stateMachine:{STATE_MACHINE}"


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def env_vars(tmp_path: Path, more: dict[str, dict[str, str]]) -> Path:
    """events/env.json with its placeholders filled in, as the README tells users to do."""
    names = {"WorkBucketName": BUCKET, "LedgerTableName": TABLE, "StateMachineArn": STATE_MACHINE_ARN}
    values = event("env.json")
    for variables in values.values():
        for key in variables:
            for output, real in names.items():
                variables[key] = variables[key].replace(f"REPLACE-with-the-{output}-output", real)
    assert "REPLACE" not in json.dumps(values)
    for function, variables in more.items():
        values.setdefault(function, {}).update(variables)
    path = tmp_path / "env.json"
    path.write_text(json.dumps(values))
    return path


class SamLocal:
    def __init__(
        self, app: BuiltApp, template: Path, tmp_path: Path, functions_env: dict[str, dict[str, str]] | None = None
    ) -> None:
        """`functions_env`: more variables per function (each declared in the template copy)."""
        self.app, self.template, self.tmp_path = app, template, tmp_path
        self.env_vars = env_vars(tmp_path, functions_env or {})
        self.logs = ""
        """The last invocation's function logs (SAM writes them to stderr)."""
        self.seconds = 0.0
        """The last `sam local invoke`'s wall time: the container's start included."""

    def invoke(self, function: str, payload: dict[str, Any]) -> dict[str, Any]:
        event_file = self.tmp_path / f"{function}-event.json"
        event_file.write_text(json.dumps(payload))
        overrides = " ".join(f"{k}={v}" for k, v in PARAMETERS.items())
        env = python312_env(self.app.engine.env())
        assert env is not None
        # The Lambda gets these as its execution role's credentials (moto accepts any).
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        env.pop("AWS_ENDPOINT_URL", None)  # SAM itself talks to nothing; only the function does
        sam = sam_cli()
        assert sam is not None
        started = time.monotonic()
        result = subprocess.run(
            [sam, "local", "invoke", function, "-t", str(self.template), "-e", str(event_file),
             "--env-vars", str(self.env_vars), "--parameter-overrides", overrides,
             "--skip-pull-image", "--region", "us-east-1"],
            cwd=self.app.build_dir, env=env, capture_output=True, text=True, timeout=1500, check=False,
        )  # fmt: skip
        self.seconds, self.logs = time.monotonic() - started, result.stderr
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        assert "errorMessage" not in answer, answer
        return dict(answer)
