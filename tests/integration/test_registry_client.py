"""The registry client against a real registry: what it asks, and what it does not ask twice."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.registry.client import RegistryClient

if TYPE_CHECKING:
    from tests.conftest import Seeder


def _manifest_gets(registry: LocalRegistry) -> list[str]:
    return [r.uri for r in registry.requests() if r.method == "GET" and "/manifests/" in r.uri]


def test_a_manifest_read_by_digest_is_read_once_by_tag_every_time(
    src_registry: LocalRegistry, seeded_src: Seeder, oci_images: SampleImages
) -> None:
    seeded_src({"tools/multi:v1": "multi"})
    client = RegistryClient(src_registry.host, insecure=True)
    index = oci_images.multi.digest
    first = client.get_manifest("tools/multi", index)
    assert first is not None and client.get_manifest("tools/multi", index) == first
    assert client.get_manifest("tools/multi", "v1") == first
    assert client.get_manifest("tools/multi", "v1") == first  # a tag can move: asked again
    assert _manifest_gets(src_registry) == [f"/v2/tools/multi/manifests/{index}"] + ["/v2/tools/multi/manifests/v1"] * 2
    assert client.get_manifest("tools/other", index) is None  # another repository is another question
