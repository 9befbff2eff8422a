from __future__ import annotations

import json
import threading
from functools import partial

import pytest

from ecr_transfer.errors import ConfigError, ConflictError, PermanentError, TransientError
from ecr_transfer.model import WorkItem
from ecr_transfer.platforms import copy_platforms, platform_copies, platforms
from ecr_transfer.registry.mediatypes import DOCKER_V2, OCI_INDEX, OCI_MANIFEST
from support.fakes import NoManifests

A, B, C = ("sha256:" + c * 64 for c in "abc")


def _index(*children: tuple[str, str]) -> bytes:
    return json.dumps(
        {"mediaType": OCI_INDEX, "manifests": [{"mediaType": t, "digest": d, "size": 1} for t, d in children]}
    ).encode()


def test_platforms_of_an_index_of_images_are_copied_side_by_side() -> None:
    assert platforms(_index((OCI_MANIFEST, A), (DOCKER_V2, B))) == [A, B]
    assert platforms(_index((OCI_MANIFEST, A), (OCI_MANIFEST, A), (OCI_MANIFEST, B))) == [A, B]


@pytest.mark.parametrize(
    "body",
    [
        _index((OCI_MANIFEST, A)),  # one platform: nothing to parallelise
        _index((OCI_MANIFEST, A), (OCI_INDEX, B)),  # nested index: left to skopeo --all
        _index((OCI_MANIFEST, A), ("application/vnd.example+json", B)),
        _index((OCI_MANIFEST, A), (OCI_MANIFEST, "md5:abc")),
        _index((OCI_MANIFEST, A), (OCI_MANIFEST, A)),
        json.dumps({"mediaType": OCI_MANIFEST, "layers": []}).encode(),
        b"not json",
    ],
)
def test_anything_else_is_copied_whole(body: bytes) -> None:
    assert platforms(body) is None


def test_platform_copies_defaults_to_4_and_refuses_zero() -> None:
    assert platform_copies({}) == 4
    assert platform_copies({"ECR_TRANSFER_PLATFORM_COPIES": "1"}) == 1
    with pytest.raises(ConfigError) as caught:
        platform_copies({"ECR_TRANSFER_PLATFORM_COPIES": "0"})
    assert str(caught.value) == "environment: ECR_TRANSFER_PLATFORM_COPIES='0': must be a whole number of at least 1"


def _units(*digests: str) -> list[WorkItem]:
    unit = partial(WorkItem, action="copy", reason="platform")
    return [unit(source=f"src.example/app@{d}", target=f"dst.example/app@{d}", source_digest=d) for d in digests]


def test_every_platform_runs_at_once_and_all_of_them_finish() -> None:
    started: list[str] = []
    together = threading.Barrier(3, timeout=5)  # fails unless all three run at the same time

    def one(unit: WorkItem) -> None:
        started.append(unit.source_digest or "")
        together.wait()

    copy_platforms(NoManifests(), _units(A, B, C), one, parallel=4)  # type: ignore[arg-type]
    assert sorted(started) == [A, B, C]


def test_a_permanent_failure_is_reported_before_a_transient_one_and_names_the_platform() -> None:
    def one(unit: WorkItem) -> None:
        if unit.source_digest == A:
            raise TransientError("connection reset")
        if unit.source_digest == B:
            raise PermanentError("manifest unknown")

    with pytest.raises(PermanentError) as caught:
        copy_platforms(NoManifests(), _units(A, B, C), one, parallel=2)  # type: ignore[arg-type]
    assert str(caught.value) == f"platform {B}: manifest unknown (and 1 more platform(s))"


def test_a_conflict_keeps_its_kind_and_a_transient_error_its_retry_after() -> None:
    def conflict(unit: WorkItem) -> None:
        raise ConflictError("tag is immutable")

    with pytest.raises(ConflictError):
        copy_platforms(NoManifests(), _units(A, B), conflict, parallel=2)  # type: ignore[arg-type]

    def throttled(unit: WorkItem) -> None:
        if unit.source_digest == B:
            raise TransientError("toomanyrequests", retry_after=7.0)

    with pytest.raises(TransientError) as caught:
        copy_platforms(NoManifests(), _units(A, B), throttled, parallel=2)  # type: ignore[arg-type]
    assert caught.value.retry_after == 7.0
    assert str(caught.value) == f"platform {B}: toomanyrequests"
