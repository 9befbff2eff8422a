"""One run walked through the real definition file, with the real payloads at every hop.

template.yaml is resolved for one set of stack parameters (DefinitionSubstitutions, the lister's
and the task's environment, the ledger table's keys); the resulting ASL is executed by a small
interpreter of the JSONPath dialect it uses (paths via jsonpath-ng, ResultSelector/ResultPath/
OutputPath, States.JsonToString and States.Format, Choice, a distributed Map with an S3 item
reader and a batcher, Catch). The Task states call the real glue: the lister, the copier task's
entrypoint logic (environment in, outcomes to S3) and the recorder, against moto's S3 and
DynamoDB. If a path in the ASL and a payload disagree, a step here fails.

Retry is not simulated (the definition tests check it); Catch is, because it moves data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from moto import mock_aws

from ecr_transfer.cloud import batch
from support.asl import REGION, Execution, Stack
from support.cloudworld import DST_HOST, PARAMS, RESOURCES, SRC_HOST, Catalog, World
from support.fakes import FakeContext


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World(Stack(PARAMS, RESOURCES))


def test_a_run_flows_from_lister_to_copier_to_recorder(world: World) -> None:
    execution, status, _ = world.execute()

    # One image unchanged: recorded as skipped by the lister, never sent to Fargate.
    assert execution.trace[:3] == ["List images", "Anything to copy?", "Copy images"]
    # Three copies and up to ten tasks at once: one image per task, all three side by side.
    assert [len(b["Items"]) for b in execution.batches] == [1, 1, 1]
    sent = {i["source"] for b in execution.batches for i in b["Items"]}
    assert sent == {f"{SRC_HOST}/team/app:2.0", f"{SRC_HOST}/team/broken:1.0", f"{SRC_HOST}/base/os:12"}
    for one_batch in execution.batches:
        assert one_batch["BatchInput"] == {
            "run_id": "run-1",
            "bucket": RESOURCES["WorkBucket"]["Ref"],
            "outcome_prefix": "runs/run-1/outcomes/",
            "fast": False,  # a scheduled run: Fargate (tests/unit/test_fast_path_contract.py)
        }

    # The copier's environment: template settings plus the batch; it parses back into WorkItems.
    assert len(world.environments) == 3
    env = world.environments[0]
    assert env["SOURCE_TYPE"] == "Amazon_ECR" and env["DEST_REGION"] == REGION and env["DEST_PREFIX"] == "mirror"
    assert env["SRC_IMAGE_LIST_PARAMETER"] == RESOURCES["ImageListParameter"]["Ref"]
    items = [i for e in world.environments for i in batch.parse_items(e[batch.WORK_ITEMS])]
    assert {i.source for i in items} == sent
    assert {i.target for i in items} >= {f"{DST_HOST}/mirror/team/app:2.0"}
    assert all(size < batch.RUN_TASK_OVERRIDES_LIMIT for size in world.overrides_sizes)

    # The recorder read the copier's outcomes from S3 and the ledger has every image.
    outcomes = {o.source.removeprefix(SRC_HOST + "/"): o for o in world.ledger.outcomes("run-1")}
    assert {k: o.status for k, o in outcomes.items()} == {
        "team/app:1.0": "skipped",
        "team/app:2.0": "copied",
        "team/broken:1.0": "failed",
        "base/os:12": "copied",
    }
    assert outcomes["team/broken:1.0"].error == "manifest unknown"

    # One failed image: the run ends failed, with one notification carrying the summary.
    assert execution.trace[-4:] == ["Finish run", "Any failures?", "Notify failure", "Run failed"]
    assert status == "FAILED"
    (note,) = world.notifications
    assert "DTHECRStack" in note["Message"] and "team/broken:1.0" in note["Message"]
    summary = json.loads(note["Message"].split("follow. ", 1)[1])["summary"]
    assert (summary["planned"], summary["copied"], summary["skipped"], summary["failed"]) == (4, 2, 1, 1)
    assert world.ledger.runs()[0].state == "finished"


def test_the_catch_path_records_every_item_of_the_batch_with_the_full_cause(world: World) -> None:
    world.task_fails = True
    execution, status, _ = world.execute("run-2")

    assert "Record failed batch" in execution.trace and "Record outcome" not in execution.trace
    failed = [o for o in world.ledger.outcomes("run-2") if o.status == "failed"]
    assert len(failed) == 3
    for outcome in failed:
        assert outcome.error is not None
        assert outcome.error.startswith("States.TaskFailed: Essential container in task exited, exit code 137")
        assert '"TaskArn": "arn:aws-cn:ecs:' in outcome.error, "the full cause is kept"
    assert status == "FAILED" and len(world.notifications) == 1


def test_an_unchanged_run_starts_no_fargate_task(world: World) -> None:
    world.image_list = "team/app:1.0"
    execution, status, output = world.execute("run-3")

    assert status == "SUCCEEDED"
    assert execution.trace == ["List images", "Anything to copy?", "Finish run", "Any failures?", "Run succeeded"]
    assert world.environments == [] and world.notifications == []
    assert output["to_copy"] == 0 and output["summary"]["skipped"] == 1
    assert [o.status for o in world.ledger.outcomes("run-3")] == ["skipped"]


def test_a_listing_error_is_recorded_against_the_run_and_notified(world: World) -> None:
    world.image_list = "team/app:1.0,,Not A Reference!"
    execution, status, _ = world.execute("run-4")
    assert status == "FAILED"

    assert execution.trace == ["List images", "Record run failure", "Notify failure", "Run failed"]
    (note,) = world.notifications
    assert "ConfigError" in note["Message"]
    (run,) = world.ledger.runs()
    assert run.run_id == "run-4" and run.state == "failed"


def test_a_busy_ledger_ends_the_run_quietly(world: World) -> None:
    world.ledger.start_run("other-run", "2030-01-01T00:00:00+00:00", "another execution")
    execution, status, _ = world.execute("run-5")

    assert execution.trace == ["List images", "Another run is in progress"]
    assert status == "SUCCEEDED" and world.notifications == []


def test_big_work_lists_are_batched_within_the_limits(world: World) -> None:
    images = {f"team/app:{n}": f"sha256:{n:064x}" for n in range(45)}
    world.context = FakeContext(source=Catalog(SRC_HOST, images), destination=Catalog(DST_HOST, {}))
    world.image_list = "team/app:ALL_TAGS"
    execution, status, _ = world.execute("run-6")

    assert status == "SUCCEEDED"
    # 45 copies, 10 tasks at a time: 5 per task, so every task the Map may run gets work.
    sizes = [len(b["Items"]) for b in execution.batches]
    assert sizes == [5] * 9
    assert len(world.environments) == 9 and max(world.overrides_sizes) < batch.RUN_TASK_OVERRIDES_LIMIT
    assert len([o for o in world.ledger.outcomes("run-6") if o.status == "copied"]) == 45


def test_batches_spread_over_the_tasks_that_may_run_at_once_up_to_20_images_each() -> None:
    assert batch.batch_size(3, 10) == 1  # three tasks side by side, not one copying three in a row
    assert batch.batch_size(45, 10) == 5
    assert batch.batch_size(1000, 10) == batch.MAX_ITEMS_PER_BATCH
    assert batch.batch_size(0, 10) == 1
    assert batch.batch_size(7, 1) == 7


def test_the_lister_retry_of_the_same_run_is_not_told_the_ledger_is_busy(world: World) -> None:
    payload = {"run_id": "run-7", "execution_arn": "arn:x", "input": {}}
    first = world.list_images(payload)
    again = world.list_images(payload)
    assert first["to_copy"] == again["to_copy"] == 3


# -- a failed Fargate task: refused batches are recorded at once, others retried (issue 10) -----------
def copy_attempts(execution: Execution) -> int:
    return execution.trace.count("Copy batch on Fargate")


@pytest.mark.parametrize("compact", [True, False], ids=["cause-as-step-functions-writes-it", "cause-with-spaces"])
def test_a_batch_the_copier_refuses_exit_2_is_recorded_without_a_retry(world: World, compact: bool) -> None:
    world.image_list = "team/app:2.0"
    world.task_exits = [2]
    world.compact_cause = compact
    execution, status, _ = world.execute("run-8")

    assert copy_attempts(execution) == 1 and execution.waits == []
    assert execution.trace[execution.trace.index("Copy batch on Fargate") :][:3] == [
        "Copy batch on Fargate",
        "Did the copier refuse the batch?",
        "Record failed batch",
    ]
    (failed,) = [o for o in world.ledger.outcomes("run-8") if o.status == "failed"]
    assert failed.error is not None
    assert failed.error.startswith("States.TaskFailed: Essential container in task exited, exit code 2 | cause: ")
    assert status == "FAILED" and len(world.notifications) == 1


def test_a_task_that_fails_otherwise_is_tried_again_after_a_wait(world: World) -> None:
    world.image_list = "team/app:2.0"
    world.task_exits = [1]  # the first task fails (S3 unreachable, say); the second one copies
    execution, status, _ = world.execute("run-9")

    assert copy_attempts(execution) == 2 and execution.waits == [60]
    assert "Record failed batch" not in execution.trace
    assert {o.source.rsplit("/", 1)[1]: o.status for o in world.ledger.outcomes("run-9")}["app:2.0"] == "copied"
    assert status == "SUCCEEDED"


def test_a_task_that_keeps_failing_is_tried_four_times_with_backoff_then_recorded(world: World) -> None:
    world.image_list = "team/app:2.0"
    world.task_fails = True  # exit code 137 every time
    execution, status, _ = world.execute("run-10")

    assert copy_attempts(execution) == 4 and execution.waits == [60, 120, 240]
    assert execution.trace[-6:-4] == ["Did the copier refuse the batch?", "Record failed batch"]
    (failed,) = [o for o in world.ledger.outcomes("run-10") if o.status == "failed"]
    assert failed.error is not None and "exit code 137" in failed.error
    assert status == "FAILED"
