"""Platform subsets (ecr_transfer.subsets): which children are chosen, and the index that holds them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from ecr_transfer.errors import ConfigError, PermanentError
from ecr_transfer.registry.mediatypes import DOCKER_LIST, DOCKER_V2, OCI_INDEX, OCI_MANIFEST
from ecr_transfer.settings import from_mapping
from ecr_transfer.subsets import parse_platforms, select, signature

BASE = {"sourceType": "Public", "srcImageList": "nginx", "destType": "Registry", "destRegistry": "127.0.0.1:5001"}


def child(n: int, os_: str, arch: str, variant: str | None = None, media_type: str = OCI_MANIFEST) -> dict[str, Any]:
    platform = {"architecture": arch, "os": os_, **({"variant": variant} if variant else {})}
    return {"mediaType": media_type, "digest": f"sha256:{n:064x}", "size": 500 + n, "platform": platform}


def attestation(n: int, of: int) -> dict[str, Any]:
    return {
        "mediaType": OCI_MANIFEST,
        "digest": f"sha256:{n:064x}",
        "size": 800,
        "annotations": {
            "vnd.docker.reference.digest": f"sha256:{of:064x}",
            "vnd.docker.reference.type": "attestation-manifest",
        },
        "platform": {"architecture": "unknown", "os": "unknown"},
    }


def index(*manifests: dict[str, Any], **extra: Any) -> bytes:
    # Indented like many registries serve it: the subset must not depend on the source's layout.
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list(manifests), **extra}, indent=3
    ).encode()


def test_subset_keeps_the_document_and_the_order_of_the_chosen_descriptors() -> None:
    body = index(
        child(1, "linux", "amd64"),
        child(2, "linux", "arm", "v7"),
        child(3, "linux", "arm64", "v8"),
        child(4, "linux", "s390x"),
        annotations={"org.opencontainers.image.source": "https://example.test/app"},
    )
    subset = select(body, ("linux/arm64", "linux/amd64"))
    assert subset is not None and not subset.whole
    assert subset.children == (f"sha256:{1:064x}", f"sha256:{3:064x}")
    doc = json.loads(subset.body)
    source = json.loads(body)
    assert doc == {**source, "manifests": [source["manifests"][0], source["manifests"][2]]}
    assert list(doc) == list(source), "keys keep their order"
    assert subset.digest == "sha256:" + hashlib.sha256(subset.body).hexdigest()
    assert subset.media_type == OCI_INDEX
    # One fixed serialization: the same inputs always give the same digest.
    assert select(body, ("linux/amd64", "linux/arm64")) == subset


def test_variants_attestations_and_docker_lists() -> None:
    body = index(child(1, "linux", "amd64"), attestation(9, of=1), child(2, "linux", "arm", "v6"), attestation(8, of=2))
    arm_v7 = index(child(1, "linux", "arm", "v7"), child(2, "linux", "arm", "v6"))
    subset = select(body, ("linux/amd64",))
    assert subset is not None
    assert subset.children == (f"sha256:{1:064x}", f"sha256:{9:064x}"), "an attestation travels with its platform"
    assert select(arm_v7, ("linux/arm/v7",)).children == (f"sha256:{1:064x}",)  # type: ignore[union-attr]
    assert select(arm_v7, ("linux/arm",)).whole  # type: ignore[union-attr]

    docker = json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [child(1, "linux", "amd64", media_type=DOCKER_V2),
                                                                    child(2, "windows", "amd64", media_type=DOCKER_V2)]}
    ).encode()  # fmt: skip
    subset = select(docker, ("windows/amd64",))
    assert subset is not None and subset.media_type == DOCKER_LIST and subset.children == (f"sha256:{2:064x}",)


def test_every_platform_wanted_is_the_source_index_itself() -> None:
    body = index(child(1, "linux", "amd64"), child(2, "linux", "arm64"))
    subset = select(body, ("linux/arm64", "linux/amd64", "linux/ppc64le"))
    assert subset is not None and subset.whole and subset.body == body
    assert subset.digest == "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode(),
        index(child(1, "linux", "amd64", media_type=OCI_INDEX)),  # nested index: copied whole
        b"not json",
        json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example.list+json", "manifests": []}).encode(),
    ],
)
def test_not_a_platform_index_is_left_alone(body: bytes) -> None:
    assert select(body, ("linux/amd64",)) is None


def test_no_wanted_platform_is_a_permanent_error_naming_those_present() -> None:
    body = index(child(1, "linux", "amd64"), attestation(9, of=1), child(2, "linux", "arm64", "v8"))
    with pytest.raises(PermanentError) as info:
        select(body, ("linux/ppc64le",), what="r.example/app@sha256:ab")
    assert str(info.value) == (
        "r.example/app@sha256:ab: none of the platforms linux/ppc64le is in the index "
        "(it has linux/amd64, linux/arm64/v8)"
    )


def test_platforms_setting_is_normalised_deduplicated_and_validated() -> None:
    assert parse_platforms("linux/AMD64, linux/arm/v7,linux/amd64") == ("linux/amd64", "linux/arm/v7")
    assert from_mapping({**BASE, "platforms": ["linux/arm64"]}).platforms == ("linux/arm64",)
    assert from_mapping({**BASE, "platforms": ["linux/arm64"]}).copies_subset
    assert not from_mapping(BASE).copies_subset
    assert signature(("linux/arm64", "linux/amd64")) == "platforms linux/amd64,linux/arm64"
    with pytest.raises(ConfigError) as info:
        from_mapping({**BASE, "platforms": ["linux"], "includeUntagged": False})
    assert info.value.problems == [
        "platforms: 'linux' is not os/architecture[/variant] (for example linux/arm64 or linux/arm/v7)"
    ]
