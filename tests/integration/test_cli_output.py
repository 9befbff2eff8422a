"""What the CLI prints, as a person and a script see it (issue 12, items 8-10 and 15).

The CLI runs as a real subprocess where stderr matters: inside pytest, logging's basicConfig
finds pytest's capture handler and prints nothing, which is how the noise went unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ecr_transfer.local.registry import LocalRegistry
from integration.ecr_support import MotoServer

pytest_plugins = ["integration.ecr_fixtures"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ecr_transfer.cli", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_an_ecr_plan_prints_no_botocore_info_lines(
    aws: MotoServer,
    src_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    write_config: Callable[..., Path],
) -> None:
    seeded_src({"team/app:1": "single"})
    cfg = write_config(
        sourceType="Public",
        srcImageList=f"{src_registry.host}/team/app:1",
        insecureRegistries=[src_registry.host],
        destType="Amazon_ECR",
        destRegion="us-east-1",
    )

    proc = cli("plan", "--config", str(cfg))

    assert proc.returncode == 0, proc.stderr
    assert "team/app:1" in proc.stdout
    # "Found credentials in environment variables." (botocore.credentials, INFO) used to appear.
    assert "botocore" not in proc.stderr and "Found credentials" not in proc.stderr, proc.stderr
