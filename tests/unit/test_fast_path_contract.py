"""The fast path walked through the real definition: a small push run's batches copied in Lambda.

Same world as test_statemachine_contract (support.cloudworld): the lister, the copier function's
handler (ecr_transfer.cloud.fast_copy with the function's environment from template.yaml), the
Fargate copier and the recorder run for real against moto; the copy itself is scripted. What the
Lambda service would do on its own (an invocation that fails or times out) is simulated by the
error name Step Functions would see.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from ecr_transfer.cloud import batch, fast_copy
from support.asl import Stack
from support.cloudworld import DST_HOST, PARAMS, RESOURCES, SRC_HOST, Catalog, World
from support.fakes import FakeContext

LAMBDA_PATH = ["Copy in Lambda or on Fargate?", "Copy batch in Lambda", "Did Lambda finish the batch?"]


def pushed(*tags: str) -> dict[str, Any]:
    """A push-triggered execution's input, as the push intake starts it."""
    return {
        "trigger": "push",
        "pushed": [
            {
                "repository": "team/app",
                "tag": t,
                "digest": "sha256:" + "2" * 64,
                "pushed_at": "2026-12-02T00:00:00.000Z",
            }
            for t in tags
        ],
    }


@pytest.fixture
def world(request: pytest.FixtureRequest) -> Iterator[World]:
    params = {**PARAMS, "onPush": "true", **getattr(request, "param", {})}
    with mock_aws():
        yield World(Stack(params, RESOURCES))


def fargate_batches(world: World) -> list[list[str]]:
    return [
        [i.source for i in batch.parse_items(e[batch.WORK_ITEMS])] for e in world.environments if batch.WORK_ITEMS in e
    ]


def test_a_small_push_run_is_copied_in_lambda_and_recorded_without_a_fargate_task(world: World) -> None:
    execution, status, output = world.execute("push-1", pushed("2.0"))

    assert status == "SUCCEEDED", output
    assert output["fast"] is True
    assert execution.trace[3:7] == [*LAMBDA_PATH, "Record outcome"]
    assert "Start the first attempt" not in execution.trace
    assert fargate_batches(world) == [] and world.overrides_sizes == []
    (answer,) = world.fast_answers
    assert {k: answer[k] for k in ("finished", "copied", "failed", "unfinished")} == {
        "finished": True, "copied": 1, "failed": 0, "unfinished": 0,
    }  # fmt: skip
    (outcome,) = world.ledger.outcomes("push-1")
    assert (outcome.source, outcome.status) == (f"{SRC_HOST}/team/app:2.0", "copied")
    # The payload Lambda got names the batch, nothing else (credentials come from Secrets Manager).
    (payload,) = [p for p in world.lambda_payloads if "items" in p and "action" not in p]
    assert set(payload) == {"run_id", "bucket", "outcome_prefix", "items"}


def test_a_scheduled_run_of_the_same_stack_goes_to_fargate(world: World) -> None:
    execution, status, _ = world.execute("daily-1")

    assert "Copy batch in Lambda" not in execution.trace
    assert execution.trace.count("Copy in Lambda or on Fargate?") == 3
    assert sorted(s for b in fargate_batches(world) for s in b) == sorted(
        f"{SRC_HOST}/{ref}" for ref in ("team/app:2.0", "team/broken:1.0", "base/os:12")
    )
    assert world.fast_answers == []
    assert status == "FAILED"  # team/broken fails, as in every run of this world


@pytest.mark.parametrize("world", [{"fastPath": "false"}], indirect=True)
def test_with_the_fast_path_off_a_push_run_goes_to_fargate(world: World) -> None:
    assert world.copier_function_env and world.lister_env["ECR_TRANSFER_FAST_PATH"] == "false"
    execution, status, _ = world.execute("push-2", pushed("2.0"))

    assert status == "SUCCEEDED"
    assert "Copy batch in Lambda" not in execution.trace and world.fast_answers == []
    assert fargate_batches(world) == [[f"{SRC_HOST}/team/app:2.0"]]


def test_a_push_run_over_the_image_bound_goes_to_fargate(world: World) -> None:
    many = {f"team/app:{n}": f"sha256:{n:064x}" for n in range(fast_copy.MAX_IMAGES + 1)}
    world.context = FakeContext(source=Catalog(SRC_HOST, many), destination=Catalog(DST_HOST, {}))
    execution, status, _ = world.execute("push-3", pushed(*(ref.split(":")[1] for ref in many)))

    assert status == "SUCCEEDED"
    assert "Copy batch in Lambda" not in execution.trace and world.fast_answers == []
    assert len([s for b in fargate_batches(world) for s in b]) == fast_copy.MAX_IMAGES + 1


def test_a_push_run_over_the_byte_bound_goes_to_fargate(world: World) -> None:
    world.context.source.sizes["team/app:2.0"] = fast_copy.MAX_BYTES + 1
    execution, status, _ = world.execute("push-3b", pushed("2.0"))

    assert status == "SUCCEEDED"
    assert "Copy batch in Lambda" not in execution.trace and world.fast_answers == []
    assert fargate_batches(world) == [[f"{SRC_HOST}/team/app:2.0"]]


def test_sizes_within_the_bound_keep_the_fast_path(world: World) -> None:
    world.context.source.sizes["team/app:2.0"] = fast_copy.MAX_BYTES
    execution, _, _ = world.execute("push-3c", pushed("2.0"))

    assert execution.trace[3:5] == LAMBDA_PATH[:2]


@pytest.mark.parametrize("error", ["Lambda.Unknown", "States.Timeout", "Lambda.TooManyRequestsException"])
def test_a_failed_invocation_hands_the_batch_to_fargate(world: World, error: str) -> None:
    world.fast_failures = [error]
    execution, status, _ = world.execute("push-4", pushed("2.0"))

    assert status == "SUCCEEDED"
    assert execution.trace[3:6] == ["Copy in Lambda or on Fargate?", "Copy batch in Lambda", "Start the first attempt"]
    assert fargate_batches(world) == [[f"{SRC_HOST}/team/app:2.0"]]
    assert [o.status for o in world.ledger.outcomes("push-4")] == ["copied"]


def test_an_invocation_short_of_time_hands_the_batch_back_and_fargate_copies_it(world: World) -> None:
    world.fast_seconds_left = fast_copy.START_RESERVE_SECONDS  # less than the handler needs to start
    execution, status, _ = world.execute("push-5", pushed("2.0"))

    assert status == "SUCCEEDED"
    assert execution.trace[3:8] == [*LAMBDA_PATH, "Start the first attempt", "Copy batch on Fargate"]
    (answer,) = world.fast_answers
    assert answer["finished"] is False and answer["unfinished"] == 1 and "left in the invocation" in answer["reason"]
    assert fargate_batches(world) == [[f"{SRC_HOST}/team/app:2.0"]]
    assert [o.status for o in world.ledger.outcomes("push-5")] == ["copied"]


def test_a_batch_the_function_refuses_is_recorded_failed_without_fargate(world: World) -> None:
    world.fast_failures = ["BatchRefused"]
    execution, status, _ = world.execute("push-6", pushed("2.0"))

    assert execution.trace[3:6] == [*LAMBDA_PATH[:2], "Record failed batch"]
    assert fargate_batches(world) == []
    (outcome,) = world.ledger.outcomes("push-6")
    assert outcome.status == "failed" and (outcome.error or "").startswith("BatchRefused")
    assert status == "FAILED"
