"""ECR on both sides with real skopeo: moto for the control plane, real registries for the bytes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from ecr_transfer.context import build_context
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.pipeline import RunResult, run
from ecr_transfer.settings import Settings, from_mapping
from ecr_transfer.skopeo import registries_conf_text

from .conftest import SkopeoRecorder
from .ecr_support import ACCOUNT_A, ACCOUNT_B, EcrEmulator, EcrPair, MotoServer

pytest_plugins = ["integration.ecr_fixtures"]

KMS_KEY = f"arn:aws-cn:kms:cn-north-1:{ACCOUNT_B}:key/11111111-2222-3333-4444-555555555555"


def transfer(settings: Settings, tmp_path: Path, *, force: bool = False) -> RunResult:
    context = build_context(settings)
    ledger = SQLiteLedger(tmp_path / "ledger.db")
    try:
        return run(context, ledger, force=force)
    finally:
        context.close()
        ledger.close()


def by_source(result: RunResult) -> dict[str, Any]:
    return {o.source.rsplit("/", 1)[-1]: o for o in result.outcomes}


def test_all_repositories_cross_partition_with_created_repositories(
    ecr_pair: EcrPair, tmp_path: Path, skopeo_recorder: SkopeoRecorder
) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    want = {
        ("team/app", "1.0"): a.publish(images.layout, "app-a", "team/app", "1.0"),
        ("team/app", "1.1"): a.publish(images.layout, "app-b", "team/app", "1.1"),
        ("tools/multi", "v1"): a.publish(images.layout, "multi", "tools/multi", "v1"),
    }
    assert want[("tools/multi", "v1")] == images.multi.digest

    result = transfer(ecr_pair.settings(destPrefix="mirror"), tmp_path)

    assert {o.status for o in result.outcomes} == {"copied"}, [o.error for o in result.outcomes]
    for (repo, tag), digest in want.items():
        assert b.digest(f"mirror/{repo}", tag) == digest  # ECR's control plane
        assert b.registry.manifest_digest(f"mirror/{repo}", tag) == digest  # the bytes
    created = b.ecr.describe_repositories()["repositories"]
    assert sorted(r["repositoryName"] for r in created) == ["mirror/team/app", "mirror/tools/multi"]
    assert {r["imageTagMutability"] for r in created} == {"MUTABLE"}
    assert all(o.target.startswith(f"{ACCOUNT_B}.dkr.ecr.cn-north-1.amazonaws.com.cn/mirror/") for o in result.outcomes)
    # Pushes went to the endpoint itself (registries.conf `location` is ignored for pushes).
    assert all(c[-1].startswith(f"docker://{b.address}/") for c in skopeo_recorder.copies())
    assert all(any(a == "--registries-conf" for a in c) for c in skopeo_recorder.copies())
    # Registry tokens reach skopeo through its 0600 authfile only, never its command line.
    argv = " ".join(a for c in skopeo_recorder.calls() for a in c)
    assert "auth-token" not in argv and "--creds" not in argv and "--authfile" in argv


def test_immutable_tags_same_digest_skipped_different_digest_conflict(
    ecr_pair: EcrPair, tmp_path: Path, skopeo_recorder: SkopeoRecorder
) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    same = a.publish(images.layout, "app-a", "svc", "same")
    a.publish(images.layout, "app-a", "svc", "changed")
    b.publish(images.layout, "app-a", "svc", "same", mutability="IMMUTABLE")
    old = b.publish(images.layout, "app-b", "svc", "changed", mutability="IMMUTABLE")

    result = transfer(ecr_pair.settings(), tmp_path)

    outcomes = by_source(result)
    assert outcomes["svc:same"].status == "skipped"
    assert outcomes["svc:same"].target_digest == same
    conflict = outcomes["svc:changed"]
    assert conflict.status == "conflict"
    assert conflict.attempts == 1
    assert "tag 'changed' already exists in the 'svc' repository and cannot be overwritten" in (conflict.error or "")
    assert len(skopeo_recorder.copies()) == 1  # the conflict was not retried
    assert b.digest("svc", "changed") == old


def test_forced_copy_onto_immutable_tag_with_same_digest_is_skipped(
    ecr_pair: EcrPair, tmp_path: Path, skopeo_recorder: SkopeoRecorder
) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    digest = a.publish(images.layout, "single", "svc", "1")
    b.publish(images.layout, "single", "svc", "1", mutability="IMMUTABLE")

    result = transfer(ecr_pair.settings(), tmp_path, force=True)

    (outcome,) = result.outcomes
    assert outcome.status == "skipped", outcome.error
    assert outcome.target_digest == digest
    assert "immutable destination tag already holds this digest" in (outcome.reason or "")
    assert len(skopeo_recorder.copies()) == 1


def test_destination_repository_created_with_settings(ecr_pair: EcrPair, tmp_path: Path) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    digest = a.publish(images.layout, "app-a", "web", "2")
    settings = ecr_pair.settings(
        srcList="SELECTED",
        srcImageList="web:2",
        repoTagMutability="IMMUTABLE",
        repoScanOnPush=True,
        repoEncryption="KMS",
        repoKmsKey=KMS_KEY,
        repoTags={"team": "platform", "cost-center": "42"},
    )

    result = transfer(settings, tmp_path)

    assert [o.status for o in result.outcomes] == ["copied"], result.outcomes
    (repo,) = b.ecr.describe_repositories(repositoryNames=["web"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": KMS_KEY}
    tags = b.ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("cost-center", "42"), ("team", "platform")]
    assert b.digest("web", "2") == digest


def test_all_tags_of_selected_repository(ecr_pair: EcrPair, tmp_path: Path) -> None:
    a, b, images = ecr_pair.a, ecr_pair.b, ecr_pair.images
    want = {tag: a.publish(images.layout, sample, "lib", tag) for tag, sample in [("x", "single"), ("y", "app-b")]}
    a.publish(images.layout, "app-a", "other", "z")

    result = transfer(ecr_pair.settings(srcList="SELECTED", srcImageList="lib:ALL_TAGS"), tmp_path)

    assert sorted(o.source.rsplit("/", 1)[-1] for o in result.outcomes) == ["lib:x", "lib:y"]
    assert b.tags("lib") == want


def test_public_registry_to_ecr(
    aws: MotoServer,
    registry_factory: Any,
    src_registry: LocalRegistry,
    seeded_src: Any,
    tmp_path: Path,
) -> None:
    digests = seeded_src({"library/busybox:1.36": "multi"})
    dest = EcrEmulator(registry_factory(auth=("AWS", EcrEmulator.token_password(ACCOUNT_A))), ACCOUNT_A, "us-east-1")
    try:
        settings = from_mapping(
            {
                "sourceType": "Public",
                "srcImageList": f"{src_registry.host}/library/busybox:1.36",
                "destRegion": "us-east-1",
                "destPrefix": "hub",
                "registryEndpoints": {dest.host: dest.endpoint},
                "insecureRegistries": [src_registry.host, dest.address],
            }
        )
        result = transfer(settings, tmp_path)
        assert [o.status for o in result.outcomes] == ["copied"], result.outcomes
        assert dest.digest("hub/library/busybox", "1.36") == digests["library/busybox:1.36"]
    finally:
        dest.stop()


def test_skopeo_pulls_through_location_and_authenticates_by_location_host(
    registry_factory: Any, oci_images: SampleImages, tmp_path: Path
) -> None:
    """The facts the copier relies on, checked on skopeo itself."""
    reg = registry_factory(auth=("AWS", "secret-token"))
    reg.push(oci_images.layout, "single", "repo", "v1")
    ecr_host = f"{ACCOUNT_A}.dkr.ecr.us-east-1.amazonaws.com"
    conf = tmp_path / "registries.conf"
    conf.write_text(registries_conf_text({ecr_host: reg.url}, [reg.host]))

    def pull(auth_host: str) -> subprocess.CompletedProcess[str]:
        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps({"auths": {auth_host: {"auth": reg.credentials.basic()}}}))
        out = tmp_path / f"out-{auth_host.replace(':', '_')}"
        out.mkdir()
        return subprocess.run(
            ["skopeo", "--insecure-policy", "--registries-conf", str(conf), "copy", "--authfile", str(authfile),
             f"docker://{ecr_host}/repo:v1", f"oci:{out}:v1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert pull(reg.host).returncode == 0  # routed to the location; login looked up by the location host
    denied = pull(ecr_host)
    assert denied.returncode != 0 and "unauthorized" in denied.stderr.lower()

    push = subprocess.run(
        ["skopeo", "--insecure-policy", "--registries-conf", str(conf), "copy", "--dest-tls-verify=false",
         f"oci:{oci_images.layout}:single", f"docker://{ecr_host}/repo:v2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert push.returncode != 0 and ecr_host in push.stderr  # pushes ignore `location`
