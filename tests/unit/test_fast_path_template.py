"""The fast path in template.yaml, the ASL and the copier image's build: checked as written.

How the pieces run is tested elsewhere: the ASL's paths in test_fast_path_contract, the handler in
test_fast_copy, the image under SAM's Lambda emulator in integration/cloud/test_fast_path_lambda.
"""

from __future__ import annotations

import re
from typing import Any

from test_statemachine_definition import LAMBDA_TRANSIENT, all_states

from ecr_transfer import envvars
from ecr_transfer.cloud import fast_copy
from support.cfn import ROOT, source_template
from support.iam import as_list, statements


def resources() -> dict[str, Any]:
    return dict(source_template()["Resources"])


def function() -> dict[str, Any]:
    return dict(resources()["CopierImageFunction"]["Properties"])


def test_the_copier_function_copies_with_the_task_definitions_settings_and_writes_only_to_tmp() -> None:
    (container,) = resources()["CopierTaskDefinition"]["Properties"]["ContainerDefinitions"]
    task = {e["Name"]: e["Value"] for e in container["Environment"]}
    variables = function()["Environment"]["Variables"]
    # AWS_DEFAULT_REGION is Lambda's own (reserved); the Stack name comes from Globals.
    assert {k: v for k, v in variables.items() if k not in ("HOME", "TMPDIR")} == {
        k: v for k, v in task.items() if k not in ("AWS_DEFAULT_REGION", envvars.STACK_NAME)
    }
    # Lambda: read-only root, a user that is not the image's: skopeo's cache and temp files in /tmp.
    assert (variables["HOME"], variables["TMPDIR"]) == ("/tmp", "/tmp")


def test_lambda_starts_the_runtime_interface_client_and_fargate_keeps_the_entrypoint() -> None:
    config = function()["ImageConfig"]
    assert config["EntryPoint"] == ["python", "-m", "awslambdaric"]
    module, handler = config["Command"][0].split(".")
    assert re.search(rf"^def {handler}\(", (ROOT / "copier" / f"{module}.py").read_text(), re.MULTILINE)
    dockerfile = (ROOT / "copier" / "Dockerfile").read_text()
    assert f"COPY copier/entrypoint.py copier/{module}.py {config['WorkingDirectory']}/" in dockerfile
    assert re.search(r"^ARG AWSLAMBDARIC_VERSION=\d+\.\d+\.\d+$", dockerfile, re.MULTILINE)
    assert '"awslambdaric==${AWSLAMBDARIC_VERSION}"' in dockerfile
    (entrypoint,) = re.findall(r"^ENTRYPOINT (.+)$", dockerfile, re.MULTILINE)
    assert entrypoint == '["python", "/opt/ecr-transfer/entrypoint.py"]'


def test_the_function_fits_lambdas_15_minutes_and_the_handler_keeps_its_reserves_inside() -> None:
    props = function()
    assert props["Timeout"] == 900
    assert props["Timeout"] / 2 > fast_copy.START_RESERVE_SECONDS + fast_copy.END_RESERVE_SECONDS
    assert props["MemorySize"] >= 1769  # one full vCPU
    # Off (reserved concurrency 0) unless push runs may take the fast path; no reservation when on.
    assert props["ReservedConcurrentExecutions"] == {"Fn::If": ["FastPathEnabled", {"Ref": "AWS::NoValue"}, 0]}
    conditions = source_template()["Conditions"]
    assert conditions["FastPathEnabled"] == {
        "Fn::And": [{"Condition": "PushEnabled"}, {"Fn::Equals": [{"Ref": "fastPath"}, "true"]}]
    }
    lister = resources()["ListerFunction"]["Properties"]["Environment"]["Variables"]
    assert lister[envvars.FAST_PATH] == {"Fn::If": ["FastPathEnabled", "true", "false"]}
    assert source_template()["Parameters"]["fastPath"]["Default"] == "true"


def test_the_lambda_copy_retries_lambdas_own_errors_only_and_falls_back_to_fargate() -> None:
    states = dict(all_states())
    choice = states["Copy in Lambda or on Fargate?"]
    assert choice["Default"] == "Start the first attempt"
    (rule,) = choice["Choices"]
    assert rule["Next"] == "Copy batch in Lambda"
    assert {"Variable": "$.BatchInput.fast", "BooleanEquals": True} in rule["And"]
    task = states["Copy batch in Lambda"]
    assert task["Resource"] == "arn:${Partition}:states:::lambda:invoke"
    assert task["Parameters"]["FunctionName"] == "${CopierFunctionArn}"
    assert set(task["Parameters"]["Payload"]) == {"run_id.$", "bucket.$", "outcome_prefix.$", "items.$"}
    (retry,) = task["Retry"]
    # A function error (timeout, crash) is not retried in Lambda: Fargate copies the batch instead.
    assert set(retry["ErrorEquals"]) == LAMBDA_TRANSIENT and retry["MaxAttempts"] <= 3
    assert [(c["ErrorEquals"], c["Next"]) for c in task["Catch"]] == [
        ([fast_copy.BatchRefused.__name__], "Record failed batch"),
        (["States.ALL"], "Start the first attempt"),
    ]
    # Longer than the function may run, so a hung invocation is Lambda's timeout, not Step Functions'.
    assert task["TimeoutSeconds"] > function()["Timeout"]
    # The result lands where "Record outcome" reads what ran the batch.
    assert task["ResultPath"] == "$.task" and "task_arn.$" in task["ResultSelector"]
    assert states["Record outcome"]["Parameters"]["Payload"]["task_arn.$"] == "$.task.task_arn"
    done = states["Did Lambda finish the batch?"]
    assert done["Choices"] == [{"Variable": "$.task.finished", "BooleanEquals": True, "Next": "Record outcome"}]
    assert done["Default"] == "Start the first attempt"


COPIERS = {"TaskRole", "CopierImageFunctionRole"}


def test_both_copiers_get_the_one_copy_policy_and_nothing_else_grants_copying() -> None:
    """Issue 14: the fast path's function role copies with the task role's very statements."""
    resources = source_template()["Resources"]
    policy = resources["CopyImagesPolicy"]["Properties"]
    assert policy["Roles"] == [{"Ref": "TaskRole"}, {"Ref": "CopierImageFunctionRole"}]
    assert "Policies" not in resources["TaskRole"]["Properties"]
    # SAM's own role for the function: basic logging and tracing only (see the transform test below).
    assert "Policies" not in resources["CopierImageFunction"]["Properties"]
    by_role = {role: [s for n, s in statements() if n == role] for role in COPIERS}
    assert by_role["TaskRole"] == by_role["CopierImageFunctionRole"] != []


def test_the_state_machine_invokes_the_copier_function_only_through_its_alias() -> None:
    machine = [s for n, s in statements() if n == "ReplicationStateMachine"]
    invokes = {s["Sid"]: s["Resource"] for s in machine if "lambda:InvokeFunction" in as_list(s["Action"])}
    alias = {"Ref": "CopierImageFunction.Alias"}
    assert invokes["CopyInLambda"] == alias
    substitutions = source_template()["Resources"]["ReplicationStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert substitutions["CopierFunctionArn"] == alias


def test_the_map_tells_each_batch_whether_its_run_is_fast() -> None:
    states = dict(all_states())
    assert states["Copy images"]["ItemBatcher"]["BatchInput"]["fast.$"] == "$.fast"
    assert states["Copy images"]["ItemProcessor"]["StartAt"] == "Copy in Lambda or on Fargate?"
