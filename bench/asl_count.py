"""Step Functions state transitions per run, counted by walking the real definition.

tests/support/asl.py interprets statemachine/ecr_replication.asl.json resolved from template.yaml,
with the real lister, copier-task and recorder glue against moto (tests/support/cloudworld.py, as
the contract test uses it). Each state entered is one transition, in the parent execution and in
every child of the distributed Map (STANDARD children are billed the same way). Retries, which
add transitions only when a step fails, are not simulated.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"


def _walk(source: dict[str, str], destination: dict[str, str]) -> tuple[list[str], int, str]:
    """(states entered, child executions, status) of one run over these catalogs."""
    import contextlib
    import io

    from moto import mock_aws

    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from support.asl import Stack
    from support.cloudworld import DST_HOST, PARAMS, RESOURCES, SRC_HOST, Catalog, World
    from support.fakes import FakeContext

    with mock_aws():
        world = World(Stack(PARAMS, RESOURCES))
        world.image_list = "team/app:ALL_TAGS"
        world.context = FakeContext(source=Catalog(SRC_HOST, source), destination=Catalog(DST_HOST, destination))
        with contextlib.redirect_stdout(io.StringIO()):  # the glue's EMF metrics lines
            execution, status, _ = world.execute()
    return execution.trace, len(execution.batches), status


def transitions() -> dict[str, Any]:
    digests = {f"team/app:{n}": "sha256:" + f"{n:064x}" for n in range(40)}
    in_sync = {f"mirror/{k}": v for k, v in digests.items()}
    noop, _, noop_status = _walk(digests, in_sync)
    # Copies: 40 images at concurrency 10 give 10 child executions (batches of 4 images).
    copied, batches, copy_status = _walk(digests, {})
    entered = Counter(copied)
    parent = [state for state in copied if entered[state] == 1]
    child = [state for state in dict.fromkeys(copied) if entered[state] > 1]
    return {
        "no_op": {"transitions": len(noop), "states": noop, "status": noop_status, "images": len(digests)},
        "copies": {
            "transitions": len(copied),
            "child_executions": batches,
            "status": copy_status,
            "images": len(digests),
            "parent_states": parent,
            "child_states": child,
        },
        "note": "no-op: the parent only (no Fargate task, no Map child); a run with copies adds "
        "the Map's children, one per batch of up to 20 images (batch_size), with their own states",
    }


if __name__ == "__main__":
    import json

    print(json.dumps(transitions(), indent=1))
