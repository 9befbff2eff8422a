"""Stand-ins where a test has no registry at all: clients, a run's context, a copier."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ecr_transfer.model import Outcome, WorkItem, now


class NoManifests:
    """Registry clients that know no manifest and no blob: copies are not ordered by shared blobs."""

    def get(self, registry: str) -> NoManifests:
        return self

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        return None

    def has_blob(self, repository: str, digest: str) -> bool:
        return False


@dataclass
class FakeContext:
    """What the cloud glue asks of a TransferContext: catalogs (when it plans), clients, close()."""

    source: Any = None
    destination: Any = None
    closed: bool = False
    clients: NoManifests = field(default_factory=NoManifests)

    def close(self) -> None:
        self.closed = True


class ScriptedCopier:
    """A copier (pipeline.CopierFactory) that copies every image but two kinds, by their name.

    A source containing `broken` fails after three attempts ("manifest unknown"); one containing
    `crash` raises, as a bug would.
    """

    def __init__(self, context: Any, run_id: str, **_: Any) -> None:
        self.run_id = run_id

    def copy(self, item: WorkItem) -> Outcome:
        if "crash" in item.source:
            raise RuntimeError("a bug")
        if "broken" in item.source:
            return item.ended(self.run_id, "failed", attempts=3, started_at=now(), error="manifest unknown")
        digest = item.source_digest or ""
        return item.copied(self.run_id, written=digest, landed=digest, attempts=1, started_at=now(), reason=item.reason)
