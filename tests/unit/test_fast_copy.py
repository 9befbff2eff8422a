"""The fast path's handler logic (ecr_transfer.cloud.fast_copy) and the clocks it keeps.

The copier is a stand-in that honours the stop event as the real Copier does (no new attempt
once it is set); skopeo's deadline is checked with a stand-in skopeo that never ends. S3 is moto.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import pytest
from moto import mock_aws

from ecr_transfer import envvars, skopeo
from ecr_transfer.cloud import batch, fast_copy
from ecr_transfer.errors import TransientError
from ecr_transfer.model import Outcome, WorkItem, now
from support.fakes import FakeContext

BUCKET = "work"
PREFIX = "runs/run-1/outcomes/"
ENV = {envvars.SOURCE_TYPE: "Public", envvars.SRC_LIST: "SELECTED", envvars.SRC_IMAGE_LIST: "unused",
       envvars.DEST_TYPE: "Amazon_ECR", envvars.DEST_REGION: "us-east-1", envvars.DEST_ACCOUNT_ID: "123456789012",
       envvars.COPIES_PER_TASK: "1", "AWS_LAMBDA_FUNCTION_NAME": "DTHECRStack-CopyImagesFunction"}  # fmt: skip


def item(n: int) -> WorkItem:
    return WorkItem(source=f"quay.io/team/app:{n}", target=f"123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:{n}",
                    action="copy", reason="not at destination", source_digest=f"sha256:{n:064x}")  # fmt: skip


def event(items: list[WorkItem]) -> dict[str, Any]:
    return {"run_id": "run-1", "bucket": BUCKET, "outcome_prefix": PREFIX, "items": [batch.compact(i) for i in items]}


class TimedCopier:
    """Each copy takes `seconds`; once the run's stop event is set, no copy starts (as Copier._skopeo)."""

    seconds = 0.0
    started: ClassVar[list[str]] = []

    def __init__(self, context: Any, run_id: str, *, stop: threading.Event, **_: Any) -> None:
        self.run_id, self.stop = run_id, stop

    def copy(self, work: WorkItem) -> Outcome:
        started = now()
        if self.stop.is_set():
            return work.ended(self.run_id, "interrupted", attempts=0, started_at=started, error="the run is stopping")
        TimedCopier.started.append(work.source)
        time.sleep(self.seconds)
        digest = work.source_digest or ""
        return work.copied(self.run_id, written=digest, landed=digest, attempts=1, started_at=started, reason="")


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        TimedCopier.started = []
        yield client


def handle(s3: Any, items: list[WorkItem], seconds_left: float, *, copy_seconds: float = 0.0) -> dict[str, Any]:
    TimedCopier.seconds = copy_seconds
    return fast_copy.handle(
        event(items),
        remaining_seconds=lambda: seconds_left,
        environ=ENV,
        copier="arn:aws:lambda:us-east-1:123456789012:function:f:live request r-1",
        s3=s3,
        build=lambda settings, environ: FakeContext(),
        image_list_loader=None,
        copier_factory=TimedCopier,
    )


def written(s3: Any, items: list[WorkItem]) -> dict[str, str]:
    body = s3.get_object(Bucket=BUCKET, Key=batch.outcome_key(PREFIX, items))["Body"].read()
    return {o.source.rsplit(":", 1)[1]: o.status for o in batch.parse_outcomes(body)}


def test_a_batch_is_copied_and_its_outcomes_written_where_the_recorder_reads_them(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [item(1), item(2)]
    answer = handle(s3, items, 900)

    assert 0 < answer.pop("seconds") < 60
    assert answer == {"run_id": "run-1", "finished": True, "copied": 2, "failed": 0, "unfinished": 0, "reason": "",
                      "task_arn": "arn:aws:lambda:us-east-1:123456789012:function:f:live request r-1"}  # fmt: skip
    assert written(s3, items) == {"1": "copied", "2": "copied"}
    # The copier's metrics, counted as the fast path's (AWS_LAMBDA_FUNCTION_NAME is set).
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert [m.get("LambdaBatchesStarted") for m in metrics if "LambdaBatchesStarted" in m] == [[1.0]]
    assert not any("FargateTasksStarted" in m for m in metrics)


def test_with_little_time_left_no_new_copy_starts_and_the_answer_hands_the_rest_back(s3: Any) -> None:
    items = [item(1), item(2), item(3)]
    # 0.3 s until "no new copy"; the first copy takes 0.6 s, so the other two never start.
    left = fast_copy.START_RESERVE_SECONDS + fast_copy.END_RESERVE_SECONDS + 0.3
    answer = handle(s3, items, left, copy_seconds=0.6)

    assert TimedCopier.started == ["quay.io/team/app:1"]
    assert (answer["finished"], answer["copied"], answer["unfinished"]) == (False, 1, 2)
    assert answer["reason"] == "2 image(s) not copied in time"
    assert written(s3, items) == {"1": "copied", "2": "interrupted", "3": "interrupted"}


def test_an_invocation_that_starts_short_of_time_copies_nothing(s3: Any) -> None:
    items = [item(1)]
    answer = handle(s3, items, fast_copy.START_RESERVE_SECONDS + fast_copy.END_RESERVE_SECONDS - 1)

    assert (answer["finished"], answer["copied"], answer["unfinished"]) == (False, 0, 1)
    assert answer["reason"] == "only 344s left in the invocation"
    assert TimedCopier.started == []


def test_a_batch_over_the_bound_is_handed_back_uncopied(s3: Any) -> None:
    items = [item(n) for n in range(fast_copy.MAX_IMAGES + 1)]
    answer = handle(s3, items, 900)

    assert (answer["finished"], answer["copied"], answer["unfinished"]) == (False, 0, fast_copy.MAX_IMAGES + 1)
    assert answer["reason"] == f"11 images, more than the fast path's {fast_copy.MAX_IMAGES}"
    assert TimedCopier.started == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"run_id": "run-1", "items": []}, "the fast path's payload lacks bucket, outcome_prefix, items"),
        ({"run_id": "r", "bucket": "b", "outcome_prefix": "p", "items": "[1]"}, "work items must be a JSON array"),
    ],
)
def test_a_payload_that_is_not_a_batch_is_refused(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(fast_copy.BatchRefused, match=message):
        fast_copy.handle(payload, remaining_seconds=lambda: 900, environ=ENV)


@pytest.mark.parametrize(
    ("pushed", "count", "sizes", "env", "fast", "why"),
    [
        (True, 2, [10, None], "true", True, "2 image(s), 10 known bytes, 1 image(s) of unknown size: Lambda"),
        (False, 1, [10], "true", False, "not push-triggered: Fargate"),
        (True, 1, [10], "false", False, "the fast path is off (fastPath false): Fargate"),
        (True, 11, [1] * 11, "true", False, "11 images to copy, more than the fast path's 10: Fargate"),
        (True, 2, [2**31, 1], "true", False, f"{2**31 + 1} bytes to copy, more than the fast path's {2**31}: Fargate"),
    ],
)
def test_which_runs_take_the_fast_path(
    pushed: bool, count: int, sizes: list[int | None], env: str, fast: bool, why: str
) -> None:
    copies = [item(n) for n in range(count)]
    known = {c.source: size for c, size in zip(copies, sizes, strict=True)}
    assert fast_copy.choose(copies, pushed=pushed, known_sizes=known, environ={envvars.FAST_PATH: env}) == (fast, why)


def test_a_copy_ends_by_the_invocations_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    never_ends = tmp_path / "skopeo"
    never_ends.write_text("#!/bin/sh\nexec sleep 60\n")
    never_ends.chmod(0o755)
    monkeypatch.setenv(envvars.SKOPEO, str(never_ends))
    request = skopeo.CopyRequest(source="quay.io/a:1", target="example.com/a:1")
    started = time.monotonic()

    with skopeo.deadline(time.monotonic() + 3), pytest.raises(TransientError, match="timed out after 3s"):
        skopeo.copy(request)
    assert time.monotonic() - started < 10
    with skopeo.deadline(time.monotonic()), pytest.raises(TransientError, match="no time left for another copy"):
        skopeo.copy(request)
