"""Keys, attribute names and (de)serialization of the DynamoDB ledger's items.

`table_definition()` is the exact CreateTable shape (tests create their table with it; the SAM
template mirrors it). How the ledger writes and leases: ecr_transfer.ledger.dynamodb.

Table schema (the SAM template creates exactly this):

- partition key `Image` (S), sort key `Tag` (S); one GSI (below); on-demand billing is right for the
  bursty write pattern. Optional but recommended: TTL on the attribute `ExpiresAt`, which only
  run-history items carry (they expire after `history_days`, 90 by default); without TTL the
  history is kept forever.

Items (`ItemType` tells them apart):

- `LATEST`: the latest outcome per image, under the old plugin's keys, so existing dashboards
  keep working. `Image` is the ECR repository name (ECR source), the Docker Hub name without
  `library/` (`nginx`), else `host/path` (`quay.io/coreos/etcd`); `Tag` is the tag, or the
  digest for a digest-pinned image (`tag@sha256:...` when both). `Status` keeps the old values
  (`Done`, `Error`, plus `Running` while a copy is under way); `ErrorMessage` now holds the
  full cause instead of a Step Functions error name; `Execution` holds the run id.
- `OUTCOME`: `Image = "RUN#<run id>"`, `Tag = <full source reference>`: per-run history.
- `RUN`: `Image = "RUN#<run id>"`, `Tag = "#RUN"`: the run summary (state, counts, note).
- `RUNLIST`: `Image = "RUNS"`, `Tag = "<started at>#<run id>"`: the same summary, for listing
  runs newest first with one Query.
- `LEASE`: `Image = Tag = "#LEASE"`: the run holding the ledger and until when.

Repository names are lowercase and cannot contain `#`, so these reserved keys never collide
with an image.

Every outcome and latest attribute: Source, Target, TransferStatus (copied, skipped, failed,
conflict, in_progress, interrupted), SourceDigest, TargetDigest, Attempts (N), ErrorMessage,
Reason, RunId, Execution, StartedAt, EndedAt, UpdatedAt (ISO 8601 UTC strings); absent values
are omitted.

Index: `ByItemType` (GSI, partition key `ItemType`, sort key `Source`, all attributes): the
latest outcomes (`latest()`, which `includeUntagged: false` plans with) are one Query on
`ItemType = LATEST` instead of a Scan of the whole history. A table without the index is
scanned instead (a warning says so).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from ecr_transfer.ecr.hosts import is_ecr_host
from ecr_transfer.model import Outcome, RunSummary
from ecr_transfer.references import DOCKER_HUB, parse_reference

TTL_ATTRIBUTE = "ExpiresAt"
"""Only run-history items carry it; enable TTL on it to expire history."""


LATEST_INDEX = "ByItemType"
"""GSI over (ItemType, Source): the latest outcomes are one Query on `ItemType = LATEST`."""


def table_definition(table_name: str) -> dict[str, Any]:
    """CreateTable arguments: `Image` (S) / `Tag` (S) keys, on demand, and the LATEST_INDEX GSI.

    The index is keyed on attributes every outcome item already carries, so adding it to an
    existing table (an update of the stack) backfills it from the items already written.
    """
    return {
        "TableName": table_name,
        "KeySchema": [{"AttributeName": "Image", "KeyType": "HASH"}, {"AttributeName": "Tag", "KeyType": "RANGE"}],
        "AttributeDefinitions": [
            {"AttributeName": "Image", "AttributeType": "S"},
            {"AttributeName": "Tag", "AttributeType": "S"},
            {"AttributeName": "ItemType", "AttributeType": "S"},
            {"AttributeName": "Source", "AttributeType": "S"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": LATEST_INDEX,
                "KeySchema": [
                    {"AttributeName": "ItemType", "KeyType": "HASH"},
                    {"AttributeName": "Source", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }


LEASE_KEY = "#LEASE"
RUN_TAG = "#RUN"
RUNS_IMAGE = "RUNS"
FIELDS = {
    "run_id": "RunId",
    "source": "Source",
    "target": "Target",
    "status": "TransferStatus",
    "source_digest": "SourceDigest",
    "target_digest": "TargetDigest",
    "attempts": "Attempts",
    "error": "ErrorMessage",
    "started_at": "StartedAt",
    "ended_at": "EndedAt",
    "reason": "Reason",
}
SUMMARY_FIELDS = ("run_id", "started_at", "ended_at", "state", "planned", "copied", "skipped", "failed", "note")
LEGACY_STATUS = {"copied": "Done", "skipped": "Done", "in_progress": "Running"}
_SER, _DESER = TypeSerializer(), TypeDeserializer()


def image_key(source: str) -> tuple[str, str]:
    """(Image, Tag) of the latest item for a source reference, as the old plugin named them."""
    ref = parse_reference(source)
    if ref.registry == DOCKER_HUB:
        image = ref.repository.removeprefix("library/")
    elif is_ecr_host(ref.registry):
        image = ref.repository
    else:
        image = f"{ref.registry}/{ref.repository}"
    if ref.digest:
        return image, f"{ref.tag}@{ref.digest}" if ref.tag else ref.digest
    return image, ref.tag or "latest"


def outcome_values(outcome: Outcome, updated_at: str) -> dict[str, Any]:
    """The attributes an outcome's history and latest items both carry."""
    values = {attr: getattr(outcome, name) for name, attr in FIELDS.items()}
    values.update(Execution=outcome.run_id, UpdatedAt=updated_at, Status=LEGACY_STATUS.get(outcome.status, "Error"))
    return values


def history_item(outcome: Outcome, values: dict[str, Any], expires_at: int) -> dict[str, Any]:
    """The run's OUTCOME item: history, so it expires (TTL_ATTRIBUTE)."""
    key = {"Image": f"RUN#{outcome.run_id}", "Tag": outcome.source, "ItemType": "OUTCOME"}
    return {**key, **values, TTL_ATTRIBUTE: expires_at}


def latest_item(outcome: Outcome, values: dict[str, Any]) -> dict[str, Any]:
    """The image's LATEST item, under the old plugin's keys; it never expires."""
    image, tag = image_key(outcome.source)
    return {"Image": image, "Tag": tag, "ItemType": "LATEST", **values}


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _SER.serialize(v) for k, v in values.items() if v is not None}


def plain(item: dict[str, Any]) -> dict[str, Any]:
    data = {k: _DESER.deserialize(v) for k, v in item.items()}
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in data.items()}


def to_outcome(item: dict[str, Any]) -> Outcome:
    data = plain(item)
    return Outcome.from_dict(
        {name: data.get(attr) for name, attr in FIELDS.items()} | {"attempts": data.get("Attempts") or 0}
    )


def pascal(name: str) -> str:
    return "".join(part.title() for part in name.split("_"))


def to_summary(item: dict[str, Any]) -> RunSummary:
    data = plain(item)
    return RunSummary.from_dict({f: data[pascal(f)] for f in SUMMARY_FIELDS if data.get(pascal(f)) is not None})


def names(*expressions: str | None) -> dict[str, str]:
    """`#Word` placeholders -> attribute names: Status, State and friends are reserved words."""
    return {f"#{w}": w for e in expressions if e for w in re.findall(r"#(\w+)", e)}


def is_conditional_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"
