"""Stand-ins for registry clients where a test's context has no registry at all."""

from __future__ import annotations


class NoManifests:
    """Registry clients that know no manifest and no blob: copies are not ordered by shared blobs."""

    def get(self, registry: str) -> NoManifests:
        return self

    def get_manifest(self, repository: str, reference: str) -> bytes | None:
        return None

    def has_blob(self, repository: str, digest: str) -> bool:
        return False
