"""Start the copier image as a Fargate task would: the task definition's environment, the state
machine's overrides for one batch, the task role through the container credentials endpoint."""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecr_transfer.cloud import batch
from ecr_transfer.model import WorkItem
from support.asl import STACK, Stack, render
from support.docker_engine import Engine, docker

IMAGE_LIST_PARAMETER = f"/{STACK}/srcImageList"
COPY_STATE = "Copy batch on Fargate"


def _copy_state(definition: Mapping[str, Any]) -> Mapping[str, Any]:
    for state in definition["States"].values():
        inner = state.get("ItemProcessor", {}).get("States", {})
        if COPY_STATE in inner:
            return dict(inner[COPY_STATE])
    raise AssertionError(f"no {COPY_STATE!r} state in the definition")


def task_environment(
    parameters: Mapping[str, str], items: list[WorkItem], *, run_id: str, bucket: str
) -> dict[str, str]:
    """What ECS puts in the container (in REGION, a China region on purpose): the task
    definition's Environment for these stack parameters, then the per-batch overrides, rendered
    from the ASL's own paths for one Map batch."""
    stack = Stack(parameters, {"ImageListParameter": {"Ref": IMAGE_LIST_PARAMETER}})
    container, env = stack.task_env()
    iteration = {
        "Items": [batch.compact(i) for i in items],
        "BatchInput": {"run_id": run_id, "bucket": bucket, "outcome_prefix": batch.outcome_prefix(run_id)},
    }
    overrides = render(_copy_state(stack.definition())["Parameters"]["Overrides"], iteration, {})
    [mine] = [c for c in overrides["ContainerOverrides"] if c["Name"] == container]
    env.update({e["Name"]: e["Value"] for e in mine["Environment"]})
    return env


@dataclass
class Container:
    engine: Engine
    name: str

    def wait(self, timeout: float = 300) -> int:
        return int(docker(self.engine, "wait", self.name, timeout=timeout).stdout.strip())

    def logs(self) -> str:
        out = docker(self.engine, "logs", self.name)
        return out.stdout + out.stderr

    def inspect(self) -> dict[str, Any]:
        return dict(json.loads(docker(self.engine, "inspect", self.name).stdout)[0])

    def changed_paths(self) -> list[str]:
        return docker(self.engine, "diff", self.name).stdout.split()

    def stop(self, grace: int) -> float:
        """`docker stop`: SIGTERM, then SIGKILL after `grace` seconds (ECS's stop timeout)."""
        started = time.monotonic()
        docker(self.engine, "stop", "-t", str(grace), self.name, timeout=grace + 60)
        return time.monotonic() - started

    def remove(self) -> None:
        docker(self.engine, "rm", "-f", self.name, check=False)


def task_user() -> str:
    """The user the task definition runs the container as (the image itself sets none)."""
    (container,) = Stack({}, {}).resource("CopierTaskDefinition")["Properties"]["ContainerDefinitions"]
    return str(container["User"])


def start_copier(engine: Engine, image: str, environment: Mapping[str, str]) -> Container:
    """`docker run` as ECS runs the task definition's container: its user, on the host network (the
    registries and moto listen on loopback). The environment goes through a 0600 file, not the
    command line."""
    name = f"ecr-transfer-copier-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="copier-env-") as tmp:
        env_file = Path(tmp) / "env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in environment.items()))
        env_file.chmod(0o600)
        docker(engine, "run", "-d", "--name", name, "--network", "host", "--user", task_user(),
               "--env-file", str(env_file), image)  # fmt: skip
    return Container(engine, name)
