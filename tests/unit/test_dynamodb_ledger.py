"""DynamoDBLedger against moto: the old plugin's keys, history, idempotent writes, the lease."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_transfer.errors import TransientError
from ecr_transfer.ledger import LedgerBusyError, open_ledger
from ecr_transfer.ledger.dynamodb import DynamoDBLedger, image_key, table_definition
from ecr_transfer.model import Outcome

TABLE = "ecr-transfer-ledger"
SRC = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(**table_definition(TABLE))
        yield ddb


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(client: Any, clock: Clock) -> Iterator[DynamoDBLedger]:
    led = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    yield led
    led.close()


def outcome(run: str, source: str, status: str, started: str = "2026-01-01T00:00:00.000+00:00", **kw: Any) -> Outcome:
    target = source.replace(SRC, "mirror.example")
    return Outcome(run_id=run, source=source, target=target, status=status, started_at=started, **kw)  # type: ignore[arg-type]


def item(client: Any, image: str, tag: str) -> dict[str, Any]:
    found = client.get_item(TableName=TABLE, Key={"Image": {"S": image}, "Tag": {"S": tag}})
    return {k: next(iter(v.values())) for k, v in found["Item"].items()}


def test_image_key_keeps_the_old_plugin_names() -> None:
    assert image_key(f"{SRC}/team/app:1.0") == ("team/app", "1.0")
    assert image_key("docker.io/library/nginx:1.27") == ("nginx", "1.27")
    assert image_key("docker.io/bitnami/redis:7") == ("bitnami/redis", "7")
    assert image_key("quay.io/coreos/etcd:v3.5.0") == ("quay.io/coreos/etcd", "v3.5.0")
    assert image_key(f"quay.io/coreos/etcd@{DIGEST_A}") == ("quay.io/coreos/etcd", DIGEST_A)
    assert image_key(f"{SRC}/app:1@{DIGEST_A}") == ("app", f"1@{DIGEST_A}")


def test_an_outcome_round_trips_through_the_dynamodb_items(ledger: DynamoDBLedger, client: Any) -> None:
    source = f"{SRC}/team/app:1.0"
    assert ledger.start_run("run-1", "2026-01-01T00:00:00.000+00:00") == []
    ledger.record(outcome("run-1", source, "in_progress"))
    assert item(client, "team/app", "1.0")["Status"] == "Running"
    final = outcome(
        "run-1", source, "failed", source_digest=DIGEST_A, attempts=3, error="skopeo: unauthorized: x" * 20,
        ended_at="2026-01-01T00:01:00.000+00:00", reason="not at destination",
    )  # fmt: skip
    ledger.record(final)
    ledger.record(outcome("run-1", f"{SRC}/team/app:1.1", "copied", source_digest=DIGEST_B, target_digest=DIGEST_B))
    summary = ledger.finish_run("run-1", "2026-01-01T00:02:00.000+00:00")

    assert (summary.planned, summary.copied, summary.failed, summary.state) == (2, 1, 1, "finished")
    assert ledger.outcomes("run-1")[0] == final  # every field, including the full cause
    assert [o.source for o in ledger.latest()] == [source, f"{SRC}/team/app:1.1"]
    assert [r.run_id for r in ledger.runs()] == ["run-1"]
    legacy = item(client, "team/app", "1.0")
    assert legacy["Status"] == "Error"
    assert legacy["TransferStatus"] == "failed"
    assert legacy["ErrorMessage"] == "skopeo: unauthorized: x" * 20
    assert legacy["Execution"] == legacy["RunId"] == "run-1"
    assert legacy["Attempts"] == "3"
    assert item(client, "team/app", "1.1")["Status"] == "Done"
    assert "ExpiresAt" in item(client, "RUN#run-1", source) and "ExpiresAt" not in legacy


def test_rewrites_are_idempotent_and_never_go_back(ledger: DynamoDBLedger, client: Any) -> None:
    source = f"{SRC}/app:1"
    ledger.start_run("run-1", "2026-01-01T00:00:00.000+00:00")
    done = outcome("run-1", source, "copied", source_digest=DIGEST_A, target_digest=DIGEST_A)
    ledger.record(outcome("run-1", source, "in_progress"))
    ledger.record(done)
    ledger.record(done)  # a retried recorder
    ledger.record(outcome("run-1", source, "in_progress"))  # a late, out-of-order write
    assert ledger.outcomes("run-1") == [done]
    assert ledger.latest() == [done]
    assert ledger.finish_run("run-1", "2026-01-01T00:05:00.000+00:00").planned == 1
    items = client.scan(TableName=TABLE)["Items"]
    assert len([i for i in items if i["ItemType"]["S"] == "OUTCOME"]) == 1

    # A later run wins the latest item; an earlier run's late write does not take it back.
    ledger.start_run("run-2", "2026-01-02T00:00:00.000+00:00")
    newer = outcome("run-2", source, "skipped", "2026-01-02T00:00:01.000+00:00", source_digest=DIGEST_A)
    ledger.record(newer)
    ledger.record(outcome("run-1", source, "failed", error="late"))
    assert ledger.latest() == [newer]


def test_second_live_run_is_refused(client: Any, clock: Clock) -> None:
    first = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    second = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    first.start_run("run-1", "2026-01-01T00:00:00.000+00:00")
    with pytest.raises(LedgerBusyError, match=r"in use by run run-1 \(.*started 2026-01-01T00:00:00.000\+00:00\)"):
        second.start_run("run-2", "2026-01-01T00:00:05.000+00:00")
    first.finish_run("run-1", "2026-01-01T00:01:00.000+00:00")
    assert second.start_run("run-2", "2026-01-01T00:02:00.000+00:00") == []


def test_expired_lease_is_taken_over_and_its_run_interrupted(client: Any, clock: Clock) -> None:
    crashed = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    source = f"{SRC}/app:1"
    crashed.start_run("run-1", "2026-01-01T00:00:00.000+00:00")
    crashed.record(outcome("run-1", source, "in_progress"))
    crashed.record(outcome("run-1", f"{SRC}/app:2", "copied"))
    # The process is gone (Fargate task killed): nobody renews the lease.
    clock.now += crashed.lease_seconds + 1

    later = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    (recovered,) = later.start_run("run-2", "2026-01-01T01:00:00.000+00:00")

    assert recovered.run_id == "run-1"
    assert recovered.state == "interrupted"
    assert recovered.note is not None and "lease expired" in recovered.note
    lost = {o.source: o for o in later.outcomes("run-1")}[source]
    assert lost.status == "interrupted"
    assert lost.error is not None and "next run re-plans it" in lost.error
    assert {o.source: o.status for o in later.latest()}[source] == "interrupted"
    assert item(client, "app", "1")["Status"] == "Error"


def test_lease_of_a_dead_local_process_is_taken_over(client: Any, clock: Clock) -> None:
    dead = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    dead.start_run("run-1", "2026-01-01T00:00:00.000+00:00")
    client.update_item(
        TableName=TABLE,
        Key={"Image": {"S": "#LEASE"}, "Tag": {"S": "#LEASE"}},
        UpdateExpression="SET Pid = :p",
        ExpressionAttributeValues={":p": {"N": str(2**22 + 12345)}},  # above pid_max: never alive
    )
    (recovered,) = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False).start_run("run-2", "2026-01-01")
    assert recovered.run_id == "run-1"
    assert recovered.state == "interrupted"


def test_records_keep_the_lease_alive(client: Any, clock: Clock) -> None:
    led = DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False)
    led.start_run("run-1", "2026-01-01T00:00:00.000+00:00")
    for n in range(4):  # a long run: 4 x 0.4 lease, with records in between
        clock.now += led.lease_seconds * 0.4
        led.record(outcome("run-1", f"{SRC}/app:{n}", "copied"))
    with pytest.raises(LedgerBusyError):
        DynamoDBLedger(TABLE, client=client, clock=clock, heartbeat=False).start_run("run-2", "2026-01-02")


def test_missing_table_is_a_configuration_error(client: Any) -> None:
    from ecr_transfer.errors import ConfigError

    with pytest.raises(ConfigError, match="DynamoDB table 'nope' does not exist"):
        DynamoDBLedger("nope", client=client, heartbeat=False).start_run("r", "2026-01-01")


def test_a_dynamodb_url_opens_the_dynamodb_ledger(client: Any) -> None:
    ledger = open_ledger(f"dynamodb://{TABLE}")
    try:
        assert isinstance(ledger, DynamoDBLedger)
        assert ledger.table == TABLE
        assert ledger.start_run("run-x", "2026-01-01T00:00:00.000+00:00") == []
        # Its own client: the product's retries, and no client-side re-check of the items it built.
        own = ledger._db._client
        assert own.meta.config.retries["mode"] == "adaptive"
        # botocore wraps its serializer in ParamValidationDecorator unless validation is off.
        assert type(own._serializer).__name__ == "JSONSerializer"
        ledger.record_many([outcome("run-x", f"{SRC}/app:{n}", "skipped") for n in range(3)])
        assert len(ledger.outcomes("run-x")) == 3
    finally:
        ledger.close()
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"


def test_lease_length_from_the_environment(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ECR_TRANSFER_LEASE_SECONDS", "7200")
    assert DynamoDBLedger(TABLE, client=client, heartbeat=False).lease_seconds == 7200
    assert DynamoDBLedger(TABLE, client=client, heartbeat=False, lease_seconds=60).lease_seconds == 60


def test_record_many_writes_every_outcome_and_stays_idempotent(ledger: DynamoDBLedger) -> None:
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    skips = [outcome("r1", f"reg.example/team/app:{n}", "skipped") for n in range(40)]
    ledger.record_many(skips)
    ledger.record_many(skips[:10])  # a retried lister writes some again: nothing doubles
    assert [o.source for o in ledger.latest()] == sorted(o.source for o in skips)
    assert [o.status for o in ledger.outcomes("r1")] == ["skipped"] * 40


def operations(client: Any) -> list[str]:
    """The DynamoDB operations the client makes from now on."""
    seen: list[str] = []
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: seen.append(model.name))
    return seen


def test_latest_is_one_query_on_the_item_type_index_not_a_scan(ledger: DynamoDBLedger, client: Any) -> None:
    """The lister plans `includeUntagged: false` with latest(): its role has Query, never Scan (issue 10)."""
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    ledger.record_many([outcome("r1", f"{SRC}/app:{n}", "skipped") for n in (2, 1, 3)])
    seen = operations(client)
    assert [o.source for o in ledger.latest()] == [f"{SRC}/app:1", f"{SRC}/app:2", f"{SRC}/app:3"]
    assert seen == ["Query"]
    (index,) = client.describe_table(TableName=TABLE)["Table"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByItemType"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["ItemType", "Source"]


def test_latest_scans_a_table_made_before_the_index(client: Any, clock: Clock) -> None:
    old = {k: v for k, v in table_definition("old-ledger").items() if k != "GlobalSecondaryIndexes"}
    old["AttributeDefinitions"] = old["AttributeDefinitions"][:2]
    client.create_table(**old)
    ledger = DynamoDBLedger("old-ledger", client=client, clock=clock, heartbeat=False)
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    ledger.record(outcome("r1", f"{SRC}/app:1", "copied"))
    seen = operations(client)
    assert [o.source for o in ledger.latest()] == [f"{SRC}/app:1"]
    assert seen == ["Query", "Scan"]


def test_a_no_op_run_writes_its_skips_in_batches_of_25(ledger: DynamoDBLedger, client: Any, clock: Clock) -> None:
    """Issue 15: 2 PutItem per skipped image made a 20,000-image no-op 40,000 requests."""
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    skips = [outcome("r1", f"{SRC}/team/app:{n}", "skipped", source_digest=DIGEST_A) for n in range(60)]
    seen = operations(client)
    written_at = clock.now
    ledger.record_many(skips)
    assert sorted(seen) == ["BatchWriteItem"] * 5  # 120 puts; the lease was renewed at start_run
    clock.now += ledger.lease_seconds  # later, the same batch write renews the lease too
    ledger.record_many(skips[:3])
    assert seen[5:] == ["BatchWriteItem", "UpdateItem"]
    # The very items `record` writes: history (expiring) and latest (kept), old plugin's Status.
    ledger.record(outcome("r1", f"{SRC}/team/app:single", "skipped", source_digest=DIGEST_A))
    batched, single = item(client, "RUN#r1", f"{SRC}/team/app:7"), item(client, "RUN#r1", f"{SRC}/team/app:single")
    assert set(batched) == set(single) and batched["ExpiresAt"] == str(int(written_at) + 90 * 86400)
    latest = item(client, "team/app", "7")
    assert (latest["Status"], latest["TransferStatus"], latest["RunId"], latest["ItemType"]) == (
        "Done", "skipped", "r1", "LATEST",
    )  # fmt: skip
    assert "ExpiresAt" not in latest
    assert ledger.finish_run("r1", "2026-01-01T00:05:00.000+00:00").skipped == 61


def test_batched_skips_of_a_newer_run_are_not_taken_back_by_an_older_runs_late_write(ledger: DynamoDBLedger) -> None:
    source = f"{SRC}/app:1"
    ledger.start_run("r2", "2026-01-02T00:00:00.000+00:00")
    newer = outcome("r2", source, "skipped", "2026-01-02T00:00:01.000+00:00", source_digest=DIGEST_A)
    ledger.record_many([newer, outcome("r2", f"{SRC}/app:2", "copied", source_digest=DIGEST_B)])
    ledger.record(outcome("r1", source, "failed", error="late"))  # a copier task of an expired run
    assert [o for o in ledger.latest() if o.source == source] == [newer]
    assert {o.status for o in ledger.outcomes("r2")} == {"skipped", "copied"}


def test_two_sources_with_one_latest_key_never_share_a_batch(ledger: DynamoDBLedger, client: Any) -> None:
    """`nginx` and `docker.io/library/nginx` are one latest item; DynamoDB refuses a batch naming a key twice."""
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    first = outcome("r1", "nginx:1.27", "skipped", source_digest=DIGEST_A)
    second = outcome("r1", "docker.io/library/nginx:1.27", "skipped", source_digest=DIGEST_B)
    ledger.record_many([first, second])
    assert item(client, "nginx", "1.27")["SourceDigest"] == DIGEST_B  # the later write landed last
    assert len(ledger.outcomes("r1")) == 2


class _Throttled:
    """moto never throttles: this client leaves half of each batch unprocessed, twice, as DynamoDB may."""

    def __init__(self, client: Any, times: int = 2) -> None:
        self._client, self.left, self.calls = client, times, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def batch_write_item(self, RequestItems: dict[str, list[Any]], **kw: Any) -> dict[str, Any]:
        self.calls += 1
        ((table, puts),) = RequestItems.items()
        if self.left:
            self.left -= 1
            half = len(puts) // 2
            if half:
                self._client.batch_write_item(RequestItems={table: puts[:half]}, **kw)
            return {"UnprocessedItems": {table: puts[half:]}}
        return dict(self._client.batch_write_item(RequestItems=RequestItems, **kw))


def test_unprocessed_puts_are_sent_again_until_written(client: Any, clock: Clock) -> None:
    throttled = _Throttled(client)
    ledger = DynamoDBLedger(TABLE, client=throttled, clock=clock, heartbeat=False)
    ledger._batches._sleep = lambda _s: None  # no real backoff in a unit test
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    ledger.record_many([outcome("r1", f"{SRC}/app:{n}", "skipped") for n in range(5)])
    assert throttled.calls == 3
    assert [o.source for o in ledger.outcomes("r1")] == sorted(f"{SRC}/app:{n}" for n in range(5))
    assert len(ledger.latest()) == 5


def test_puts_left_unprocessed_for_good_fail_the_write_and_say_how_many(client: Any, clock: Clock) -> None:
    ledger = DynamoDBLedger(TABLE, client=_Throttled(client, times=100), clock=clock, heartbeat=False)
    ledger._batches._sleep = lambda _s: None
    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    with pytest.raises(TransientError, match="puts still unprocessed after 9 tries"):
        ledger.record_many([outcome("r1", f"{SRC}/app:{n}", "skipped") for n in range(4)])


def test_finishing_a_no_op_run_reads_its_history_once(ledger: DynamoDBLedger, client: Any) -> None:
    """The summary counts the outcomes; only a run with failures reads them again to name them."""
    from ecr_transfer.cloud import recorder

    ledger.start_run("r1", "2026-01-01T00:00:00.000+00:00")
    ledger.record_many([outcome("r1", f"{SRC}/app:{n}", "skipped") for n in range(30)])
    seen = operations(client)
    summary = recorder.handle({"action": "finish_run", "run_id": "r1"}, ledger=ledger, s3=None)
    assert (summary["skipped"], summary["failures"]) == (30, [])
    assert sorted(seen) == ["DeleteItem", "GetItem", "PutItem", "PutItem", "Query"]
