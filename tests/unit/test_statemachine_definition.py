"""The replication state machine definition, checked as a graph and against template.yaml.

cfn-lint does not look inside ASL files, so these tests are the definition's linter: targets,
reachability, placeholders versus DefinitionSubstitutions, Retry/Catch on every Task, paths
that parse, and the batch limits that keep a Fargate task's overrides under ECS's limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str
from jsonpath_ng import parse as parse_jsonpath

from ecr_transfer.cloud import batch

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "statemachine" / "ecr_replication.asl.json"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9]+)\}")
LAMBDA_TRANSIENT = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}


def asl_text() -> str:
    return ASL_PATH.read_text(encoding="utf-8")


def asl() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(asl_text())
    return data


def template() -> dict[str, Any]:
    data, problems = decode_str((ROOT / "template.yaml").read_text(encoding="utf-8"))
    assert not problems, problems
    return dict(data)


def scopes(machine: dict[str, Any], name: str = "<top>") -> Iterator[tuple[str, dict[str, Any]]]:
    """The top-level States and every Map/Parallel's own States: each is its own namespace."""
    yield name, machine
    for state_name, state in machine["States"].items():
        if "ItemProcessor" in state:
            yield from scopes(state["ItemProcessor"], state_name)
        if "Iterator" in state:
            yield from scopes(state["Iterator"], state_name)
        for i, branch in enumerate(state.get("Branches", [])):
            yield from scopes(branch, f"{state_name}[{i}]")


def all_states() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, scope in scopes(asl()):
        yield from scope["States"].items()


def targets(state: dict[str, Any]) -> list[str]:
    found = [state[k] for k in ("Next", "Default") if k in state]
    found += [c["Next"] for c in state.get("Choices", [])]
    found += [c["Next"] for c in state.get("Catch", [])]
    return found


def test_the_definition_is_json_with_a_start() -> None:
    machine = asl()
    assert machine["StartAt"] == "List images"
    assert machine["StartAt"] in machine["States"]


@pytest.mark.parametrize("scope_name", [name for name, _ in scopes(asl())])
def test_every_target_exists_and_every_state_is_reachable(scope_name: str) -> None:
    scope = dict(scopes(asl()))[scope_name]
    states = scope["States"]
    assert scope["StartAt"] in states
    for name, state in states.items():
        for target in targets(state):
            assert target in states, f"{scope_name}: {name!r} goes to missing state {target!r}"
    seen: set[str] = set()
    todo = [scope["StartAt"]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(targets(states[name]))
    assert set(states) == seen, f"{scope_name}: unreachable {sorted(set(states) - seen)}"


def test_every_state_ends_or_continues() -> None:
    for name, state in all_states():
        kind = state["Type"]
        if kind in {"Succeed", "Fail"}:
            assert "Next" not in state and "End" not in state, name
        elif kind == "Choice":
            assert state["Choices"] and "Default" in state, f"{name}: a Choice without Default can get stuck"
        else:
            assert ("Next" in state) != bool(state.get("End")), f"{name} needs exactly one of Next / End"


def test_state_names_are_sentences() -> None:
    for name, _ in all_states():
        assert name[0].isupper() and " " in name, f"{name!r}: name states as sentences ('Copy images')"


def test_every_task_has_its_own_retry_and_catch() -> None:
    tasks = [(n, s) for n, s in all_states() if s["Type"] in {"Task", "Map"}]
    assert len(tasks) >= 7
    for name, state in tasks:
        assert state.get("Catch"), f"{name} has no Catch"
        if state["Type"] == "Task":
            assert state.get("Retry"), f"{name} has no Retry"
        for retrier in state.get("Retry", []):
            if retrier["ErrorEquals"] == ["LedgerBusyError"]:
                continue  # a wait for another run, not a retry of a fault (the test below)
            assert retrier["MaxAttempts"] <= 6 and retrier.get("BackoffRate", 1) >= 1, name
            # States.ALL, when used, must stand alone and last (a definition error otherwise).
            if "States.ALL" in retrier["ErrorEquals"]:
                assert retrier["ErrorEquals"] == ["States.ALL"] and retrier is state["Retry"][-1], name
        catch_all = [c for c in state["Catch"] if "States.ALL" in c["ErrorEquals"]]
        assert catch_all and catch_all[-1] is state["Catch"][-1], f"{name}: the last Catch must be States.ALL"


def test_lambda_tasks_retry_the_transient_lambda_errors() -> None:
    for name, state in all_states():
        if state.get("Resource", "").endswith(":lambda:invoke"):
            errors = {e for r in state["Retry"] for e in r["ErrorEquals"]}
            assert errors >= LAMBDA_TRANSIENT, name


def test_fargate_copy_retries_ecs_errors_and_throttling_with_backoff() -> None:
    state = dict(all_states())["Copy batch on Fargate"]
    assert state["Resource"] == "arn:${Partition}:states:::ecs:runTask.sync"
    for retrier in state["Retry"]:
        assert retrier["MaxAttempts"] == 3 and retrier["BackoffRate"] == 2 and retrier["IntervalSeconds"] >= 30
    retried = {e for r in state["Retry"] for e in r["ErrorEquals"]}
    # ECS.InvalidParameterException: how ECS reports EC2 throttling under many concurrent RunTasks.
    assert retried == {"ECS.AmazonECSException", "AmazonECS.Unknown", "ECS.InvalidParameterException"}
    # A batch that hangs must end: Step Functions stops the task on timeout.
    assert 0 < state["TimeoutSeconds"] <= 86400


def test_a_failed_task_is_not_retried_blindly_exit_code_2_is_final() -> None:
    """Issue 10: Retry on States.TaskFailed also retried batches the copier refused (exit code 2)."""
    states = dict(all_states())
    copy = states["Copy batch on Fargate"]
    retried = {e for r in copy["Retry"] for e in r["ErrorEquals"]}
    assert not retried & {"States.TaskFailed", "States.ALL"}
    first = copy["Catch"][0]
    assert first == {
        "ErrorEquals": ["States.TaskFailed"],
        "ResultPath": "$.error",
        "Next": "Did the copier refuse the batch?",
    }
    choice = states["Did the copier refuse the batch?"]
    refused, again = choice["Choices"]
    assert refused["Next"] == "Record failed batch" and choice["Default"] == "Record failed batch"
    patterns = {r["StringMatches"] for r in refused["And"][1]["Or"]}
    assert patterns == {'*"ExitCode":2,*', '*"ExitCode":2}*', '*"ExitCode": 2,*', '*"ExitCode": 2}*'}
    # Three more attempts, as the old plugin's Retry (MaxAttempts 3), 60 s apart and doubling.
    assert again == {"Variable": "$.attempt", "NumericLessThan": 4, "Next": "Plan the next attempt"}
    assert "States.Array(60, 120, 240)" in states["Plan the next attempt"]["Parameters"]["wait_seconds.$"]


def test_the_map_is_distributed_reads_s3_and_batches_like_the_copier_expects() -> None:
    copy = asl()["States"]["Copy images"]
    assert copy["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert copy["ItemReader"]["Resource"] == "arn:${Partition}:states:::s3:getObject"
    assert copy["ItemReader"]["ReaderConfig"]["InputType"] == "JSON"
    assert copy["ItemBatcher"]["MaxItemsPerBatchPath"] == "$.batch_size"
    assert "MaxItemsPerBatch" not in copy["ItemBatcher"]  # one or the other, never both
    assert copy["ItemBatcher"]["MaxInputBytesPerBatch"] == batch.MAX_BATCH_BYTES
    assert copy["MaxConcurrencyPath"] == "$.concurrency"
    # Child outputs are discarded: thousands of batches must not add up in the parent's payload.
    assert copy["ResultPath"] is None


def test_nothing_to_copy_skips_the_map() -> None:
    choice = asl()["States"]["Anything to copy?"]
    assert choice["Choices"] == [{"Variable": "$.to_copy", "NumericGreaterThan": 0, "Next": "Copy images"}]
    assert choice["Default"] != "Copy images"


def test_failures_are_recorded_then_notified() -> None:
    states = dict(all_states())
    assert states["Copy batch on Fargate"]["Catch"][-1]["Next"] == "Record failed batch"
    assert states["Record failed batch"]["Parameters"]["Payload"]["error.$"] == "$.error"
    for name in ("List images", "Copy images"):
        assert states[name]["Catch"][-1]["Next"] == "Record run failure"
    assert states["Record run failure"]["Next"] == "Notify failure"
    assert states["Notify failure"]["Resource"] == "arn:${Partition}:states:::sns:publish"


def test_placeholders_and_definition_substitutions_match_both_ways() -> None:
    used = set(PLACEHOLDER.findall(asl_text()))
    machine = template()["Resources"]["ReplicationStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachine/ecr_replication.asl.json"
    assert used == set(machine["DefinitionSubstitutions"]), "placeholder without substitution, or unused one"


def test_every_resource_arn_is_partition_aware() -> None:
    for name, state in all_states():
        resource = state.get("Resource")
        if resource is not None:
            assert resource.startswith("arn:${Partition}:states:::"), name
    assert "arn:aws:" not in asl_text()


def test_state_machine_name_keeps_the_old_one() -> None:
    machine = template()["Resources"]["ReplicationStateMachine"]["Properties"]
    assert machine["Name"] == {"Fn::Sub": "${AWS::StackName}-ECRReplicationSM"}
    assert machine["Type"] == "STANDARD"


def _paths(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith(".$") or key in {"InputPath", "OutputPath", "ResultPath", "Variable", "MaxConcurrencyPath"}:
                if isinstance(value, str):
                    yield value
            else:
                yield from _paths(value)
    elif isinstance(node, list):
        for value in node:
            yield from _paths(value)


def test_every_path_parses() -> None:
    paths = list(_paths(asl()))
    assert len(paths) > 30
    for path in paths:
        if path.startswith("States."):
            for inner in re.findall(r"(\$\$?[.\w\[\]]*)", path):
                parse_jsonpath("$" + inner[2:] if inner.startswith("$$") else inner)
            continue
        assert path.startswith("$"), path
        parse_jsonpath("$" + path[2:] if path.startswith("$$") else path)


def test_no_secret_values_travel_in_the_definition() -> None:
    text = asl_text().lower()
    for word in ("password", "secret_access_key", "token", "credential"):
        assert word not in text


def test_the_worst_case_batch_fits_the_run_task_overrides_limit() -> None:
    """Long references, digests and reasons: the batcher's byte cap still fits ECS's 8192 characters."""
    repo = "team-" + "x" * 200
    digest = "sha256:" + "f" * 64
    item = {
        "source": f"123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn/{repo}:{'t' * 128}",
        "target": f"123456789012.dkr.ecr.us-east-1.amazonaws.com/mirror/{repo}:{'t' * 128}",
        "action": "copy",
        "reason": "r" * batch.MAX_REASON,
        "source_digest": digest,
        "target_digest": digest,
    }
    batch_input = {"run_id": "x" * 80, "bucket": "b" * 63, "outcome_prefix": "runs/" + "x" * 80 + "/outcomes/"}
    items: list[dict[str, Any]] = []
    while len(items) < batch.MAX_ITEMS_PER_BATCH:
        candidate = {"BatchInput": batch_input, "Items": [*items, item]}
        if len(json.dumps(candidate, separators=(",", ":"))) > batch.MAX_BATCH_BYTES:
            break
        items.append(item)
    assert items, "a single worst-case item must fit a batch"
    env = [
        {"Name": batch.RUN_ID, "Value": batch_input["run_id"]},
        {"Name": batch.WORK_BUCKET, "Value": batch_input["bucket"]},
        {"Name": batch.OUTCOME_PREFIX, "Value": batch_input["outcome_prefix"]},
        {"Name": batch.WORK_ITEMS, "Value": json.dumps(items, separators=(",", ":"))},
    ]
    overrides = {"containerOverrides": [{"name": "copier", "environment": env}]}
    assert len(json.dumps(overrides)) < batch.RUN_TASK_OVERRIDES_LIMIT


def test_a_run_that_finds_the_ledger_busy_waits_for_it_for_hours_before_giving_up() -> None:
    """No push is lost: a push-triggered run during the daily run (or the other way round) waits
    for the ledger instead of ending at "Another run is in progress" (tests/integration/
    test_push_handlers.py plays both orders through the lister)."""
    states = dict(all_states())
    lister = states["List images"]
    [wait] = [r for r in lister["Retry"] if "LedgerBusyError" in r["ErrorEquals"]]
    assert wait["ErrorEquals"] == ["LedgerBusyError"] and wait["BackoffRate"] == 1
    assert wait["IntervalSeconds"] * wait["MaxAttempts"] >= 4 * 3600  # a batch's longest (TimeoutSeconds)
    assert wait["IntervalSeconds"] <= 60  # and the push waits at most a minute once the ledger is free
    # Only after that wait does the run end as "Another run is in progress".
    [busy] = [c for c in lister["Catch"] if c["ErrorEquals"] == ["LedgerBusyError"]]
    assert busy["Next"] == "Another run is in progress"
