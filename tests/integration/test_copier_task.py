"""The Fargate copier task's batch, on real registries with real skopeo; S3 through moto.

The same code in the container `sam build` makes is run in tests/integration/cloud (Docker).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ecr_transfer.cloud import batch, copier_task
from ecr_transfer.errors import ConfigError
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.model import WorkItem

from .conftest import SkopeoRecorder

BUCKET = "ecr-transfer-work"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_a_batch_is_copied_side_by_side_sharing_layers_once_and_its_outcomes_land_in_s3(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    oci_images: SampleImages,
    skopeo_recorder: SkopeoRecorder,
    s3: Any,
) -> None:
    digests = seeded_src(
        {"team/a:1": "app-a", "team/b:1": "app-b", "tools/multi:v1": "multi", "one/single:1": "single"}
    )
    s, d = src_registry.host, dst_registry.host
    items = [
        WorkItem(
            source=f"{s}/{ref}",
            target=f"{d}/mirror/{ref}",
            action="copy",
            reason="not at destination",
            source_digest=digest,
        )
        for ref, digest in digests.items()
    ]
    env = {
        batch.RUN_ID: "run-1",
        batch.WORK_BUCKET: BUCKET,
        batch.OUTCOME_PREFIX: batch.outcome_prefix("run-1"),
        batch.WORK_ITEMS: json.dumps([batch.compact(i) for i in items]),
        # What the task definition sets: the transfer settings.
        "SOURCE_TYPE": "Public",
        "SRC_IMAGE_LIST": ",".join(f"{s}/{ref}" for ref in digests),
        "DEST_TYPE": "Registry",
        "DEST_REGISTRY": d,
        "DEST_PREFIX": "mirror",
        "INSECURE_REGISTRIES": f"{s},{d}",
    }

    assert copier_task.run_batch(env, s3=s3, image_list_loader=None) == 0

    key = batch.outcome_key(env[batch.OUTCOME_PREFIX], items)
    outcomes = batch.parse_outcomes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert sorted((o.source, o.status, o.target_digest) for o in outcomes) == sorted(
        (i.source, "copied", i.source_digest) for i in items
    )
    for ref, digest in digests.items():
        repo, tag = ref.split(":")
        assert dst_registry.manifest_digest(f"mirror/{repo}", tag) == digest
    assert len(skopeo_recorder.copies()) == 4
    assert len(skopeo_recorder.platform_copies()) == len(oci_images.multi.children)
    # app-a and app-b share their base layer: copied side by side, it was uploaded once.
    base = (set(oci_images.app_a.layer_digests) & set(oci_images.app_b.layer_digests)).pop()
    uploads = [r.uri for r in dst_registry.requests() if r.method == "PUT" and "/blobs/uploads/" in r.uri]
    assert sum(base.replace(":", "%3A") in uri for uri in uploads) == 1, uploads


def test_copies_per_task_defaults_and_refuses_what_is_not_a_count() -> None:
    assert copier_task.copies_per_task({}) == copier_task.DEFAULT_COPIES_PER_TASK
    assert copier_task.copies_per_task({"ECR_TRANSFER_COPIES_PER_TASK": "1"}) == 1
    with pytest.raises(ConfigError, match="ECR_TRANSFER_COPIES_PER_TASK='x': must be a whole number of at least 1"):
        copier_task.copies_per_task({"ECR_TRANSFER_COPIES_PER_TASK": "x"})
