"""One DynamoDB table through its client: errors explained, conditional puts, paginated reads.

The ledger (ledger.dynamodb) speaks to its table only through this.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from ecr_transfer.errors import ConfigError
from ecr_transfer.ledger.dynamodb_items import is_conditional_failure, names, to_item


class NoIndex(Exception):
    """The table has no such index (an older ledger table)."""


class DynamoDBTable:
    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self.table = table

    def call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, operation)(TableName=self.table, **kwargs)
        except ClientError as exc:
            raise self.explained(exc) from None

    def batch_write(self, puts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One BatchWriteItem of these PutRequests; returns those DynamoDB left unprocessed."""
        try:
            answer = self._client.batch_write_item(RequestItems={self.table: puts})
        except ClientError as exc:
            raise self.explained(exc) from None
        return list(answer.get("UnprocessedItems", {}).get(self.table, []))

    def explained(self, exc: ClientError) -> Exception:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            return ConfigError(f"DynamoDB table {self.table!r} does not exist (or is not ACTIVE)")
        if code == "AccessDeniedException":
            return ConfigError(f"no access to DynamoDB table {self.table!r}: {exc}")
        return exc

    def put(self, values: dict[str, Any], condition: str | None = None, params: dict[str, Any] | None = None) -> bool:
        """PutItem; False when the condition did not hold."""
        kwargs: dict[str, Any] = {"Item": to_item(values)}
        if condition:
            kwargs["ConditionExpression"] = condition
            kwargs["ExpressionAttributeNames"] = names(condition)
        if params:
            kwargs["ExpressionAttributeValues"] = to_item(params)
        try:
            self.call("put_item", **kwargs)
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def query(self, image: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {
            "KeyConditionExpression": "#Image = :image",
            "ExpressionAttributeNames": names(
                "#Image", kwargs.get("FilterExpression"), kwargs.get("ProjectionExpression")
            ),
            "ExpressionAttributeValues": to_item({":image": image, **kwargs.pop("values", {})}),
            **kwargs,
        }
        while True:
            page = self.call("query", **params)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page or "Limit" in params:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def pages(self, operation: str, params: dict[str, Any], missing_index_raises: bool = False) -> Iterator[Any]:
        while True:
            try:
                page = getattr(self._client, operation)(TableName=self.table, **params)
            except ClientError as exc:
                # DynamoDB answers ValidationException for an unknown index; moto, ResourceNotFound.
                code = exc.response.get("Error", {}).get("Code")
                if missing_index_raises and code in ("ValidationException", "ResourceNotFoundException"):
                    raise NoIndex from None
                raise self.explained(exc) from None
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params = {**params, "ExclusiveStartKey": page["LastEvaluatedKey"]}
