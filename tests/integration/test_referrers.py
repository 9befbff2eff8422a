"""Referrers travel with their image: a cosign signature tag, an SBOM artifact listed in a tag-schema
referrers index whose descriptors carry artifactType, and a signature of that SBOM (a referrer of a
referrer), on real registries. Digests at the destination are the source's, byte for byte.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer import cli
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry
from support.artifacts import (
    SIGNATURE_ARTIFACT,
    SPDX,
    artifact,
    cosign_signature,
    manifest_descriptor,
    referrers_index,
)

from .conftest import SkopeoRecorder, Transfer
from .registry_proxy import ProxyReply, ProxyRequest, RegistryProxy


@dataclass(frozen=True)
class Signed:
    image: str
    signature: dict[str, Any]
    sbom: dict[str, Any]
    sbom_signature: dict[str, Any]
    index: dict[str, Any]
    sbom_index: dict[str, Any]


@pytest.fixture
def signed(src_registry: LocalRegistry, oci_images: SampleImages) -> Signed:
    """team/app:1.0 with a cosign .sig tag, an SBOM in the tag-schema index, and the SBOM signed."""
    image = src_registry.push(oci_images.layout, "app-a", "team/app", "1.0")
    subject = manifest_descriptor(src_registry, "team/app", image)
    signature = cosign_signature(src_registry, "team/app", image, "first")
    sbom = artifact(src_registry, "team/app", SPDX, b'{"spdxVersion": "SPDX-2.3"}', subject)
    sbom_subject = {k: v for k, v in sbom.items() if k != "artifactType"}
    sbom_signature = artifact(src_registry, "team/app", SIGNATURE_ARTIFACT, b"sig-of-sbom", sbom_subject)
    index = referrers_index(src_registry, "team/app", image, [sbom])
    sbom_index = referrers_index(src_registry, "team/app", sbom["digest"], [sbom_signature])
    return Signed(image, signature, sbom, sbom_signature, index, sbom_index)


def tag_of(digest: str, suffix: str = "") -> str:
    return digest.replace(":", "-") + suffix


def test_referrers_arrive_identical_skip_when_unchanged_and_a_new_signature_arrives(
    transfer: Transfer, signed: Signed, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    s = transfer.src.host
    cfg = transfer.config(f"{s}/team/app:1.0")
    ledger = str(tmp_path / "l.db")

    code, first = transfer.run(cfg, ledger=ledger)
    assert code == 0, first
    referrer_tags = [tag_of(signed.image), tag_of(signed.image, ".sig"), tag_of(signed.sbom["digest"])]
    assert [i["source"] for i in first["items"]] == [f"{s}/team/app:1.0"] + [f"{s}/team/app:{t}" for t in referrer_tags]
    assert {i["status"] for i in first["items"]} == {"copied"}
    # Byte for byte: every tag, and the untagged manifests the referrers indexes list.
    for reference in ["1.0", *referrer_tags, signed.sbom["digest"], signed.sbom_signature["digest"]]:
        assert transfer.dst.get_manifest("team/app", reference) == transfer.src.get_manifest("team/app", reference)
    index = json.loads(transfer.dst.get_manifest("team/app", tag_of(signed.image)) or b"")
    assert index["manifests"][0]["artifactType"] == SPDX, "the descriptors keep artifactType (skopeo would drop it)"
    # skopeo copied the image only; referrers went through the registry API.
    assert len(skopeo_recorder.calls()) == 1
    reasons = dict(sqlite3.connect(ledger).execute("SELECT source, reason FROM outcomes").fetchall())
    assert reasons[f"{s}/team/app:{tag_of(signed.sbom['digest'])}"] == (
        f"referrer of {s}/team/app@{signed.sbom['digest']}: not at destination"
    )

    calls = len(skopeo_recorder.calls())
    transfer.dst.reset_requests()
    code, second = transfer.run(cfg, ledger=ledger)
    assert code == 0 and second["counts"] == {"planned": 4, "copied": 0, "skipped": 4, "failed": 0}
    assert len(skopeo_recorder.calls()) == calls
    assert [r for r in transfer.dst.requests() if r.method not in ("GET", "HEAD")] == []

    # An attestation added to the unchanged image arrives on the next run, alone; a signature
    # re-signed (cosign appends to the .sig manifest, so its digest changes) is copied again.
    attestation = cosign_signature(transfer.src, "team/app", signed.image, "later", ".att")
    resigned = cosign_signature(transfer.src, "team/app", signed.image, "again")
    code, third = transfer.run(cfg, ledger=ledger)
    assert code == 0 and third["counts"] == {"planned": 5, "copied": 2, "skipped": 3, "failed": 0}
    assert transfer.dst.manifest_digest("team/app", tag_of(signed.image, ".att")) == attestation["digest"]
    assert transfer.dst.manifest_digest("team/app", tag_of(signed.image, ".sig")) == resigned["digest"]


def test_referrers_off_and_referrer_tags_are_not_tags_of_the_expansion(
    transfer: Transfer, signed: Signed, tmp_path: Path
) -> None:
    s = transfer.src.host
    code, doc = transfer.cli("run", "--config", str(transfer.config(f"{s}/team/app:ALL_TAGS", copyReferrers=False)),
                         "--ledger", str(tmp_path / "l.db"))  # fmt: skip
    assert code == 0 and [i["source"] for i in doc["items"]] == [f"{s}/team/app:1.0"]
    assert transfer.dst.tags("team/app") == ["1.0"]


def test_a_refused_referrer_fails_with_its_cause_and_the_image_still_transfers(
    transfer: Transfer, signed: Signed, write_config: Callable[..., Path]
) -> None:
    refused = f"/v2/team/app/manifests/{tag_of(signed.image, '.sig')}"
    message = b'{"errors":[{"code":"UNSUPPORTED","message":"Invalid parameter at \'subject\'"}]}'

    def before(request: ProxyRequest) -> ProxyReply | None:
        if request.method == "PUT" and request.path == refused:
            return ProxyReply(405, [("Content-Type", "application/json")], message)
        return None

    proxy = RegistryProxy(transfer.dst.host, before=before).start()
    host = proxy.host
    try:
        s = transfer.src.host
        cfg = write_config(
            sourceType="Public", srcImageList=f"{s}/team/app:1.0", destType="Registry", destRegistry=proxy.host,
            insecureRegistries=[s, proxy.host],
        )  # fmt: skip
        code, doc = transfer.run(cfg)
    finally:
        proxy.stop()
    assert code == 1
    status = {i["source"].rsplit(":", 1)[1]: (i["status"], i["error"]) for i in doc["items"]}
    assert status["1.0"] == ("copied", None)
    assert status[tag_of(signed.image)] == ("copied", None)
    assert status[tag_of(signed.image, ".sig")] == (
        "failed",
        f"manifest {host}/team/app:{tag_of(signed.image, '.sig')}: {host} refused the manifest "
        f"(HTTP 405): {message.decode()}",
    )
    assert transfer.dst.manifest_digest("team/app", "1.0") == signed.image


def test_an_index_whose_descriptors_carry_artifact_type_keeps_its_digest(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    """skopeo 1.9.3 drops `artifactType` from index descriptors (a new digest on every run): the
    platforms go by skopeo, the attestation and the index itself byte for byte."""
    from ecr_transfer.local.oci import OCI_INDEX, Layer, write_index
    from support.artifacts import push_manifest

    src, dst = transfer.src, transfer.dst
    platforms = write_index(
        tmp_path / "layout", "multi", {("linux", a): [Layer.text(f"{a}.txt", a)] for a in ("amd64", "arm64")}
    )
    src.push(tmp_path / "layout", "multi", "team/tool", "base")
    amd64 = manifest_descriptor(src, "team/tool", platforms.children[0].digest)
    attestation = artifact(src, "team/tool", "application/vnd.in-toto+json", b'{"_type": "stmt"}', amd64)
    source_index = json.loads(src.get_manifest("team/tool", "base") or b"")
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*source_index["manifests"], attestation]}
    pushed = push_manifest(src, "team/tool", doc, "v2")
    cfg = transfer.config(f"{src.host}/team/tool:v2")

    code, first = transfer.run(cfg)
    assert code == 0 and first["counts"]["copied"] == 1, first
    assert dst.get_manifest("team/tool", "v2") == src.get_manifest("team/tool", "v2")
    assert dst.manifest_digest("team/tool", "v2") == pushed["digest"]
    assert dst.get_manifest("team/tool", attestation["digest"]) is not None
    assert len(skopeo_recorder.platform_copies()) == 2 and skopeo_recorder.copies() == []

    code, second = transfer.run(cfg)
    assert code == 0 and second["counts"]["skipped"] == 1


def test_referrers_only_the_referrers_api_knows_arrive_by_digest(transfer: Transfer, tmp_path: Path) -> None:
    """distribution 2.8 has no referrers API: a proxy answers it for the source, as ECR or a newer
    registry would (a test double for that one endpoint; every byte still comes from the registry)."""
    src = transfer.src
    image = src.push(transfer.images.layout, "app-a", "team/app", "1.0")
    subject = manifest_descriptor(src, "team/app", image)
    # Notation-style: a signature pushed by digest, which no tag names.
    signature = artifact(src, "team/app", "application/vnd.cncf.notary.signature", b"notary-sig", subject)
    asked: list[str] = []

    def before(request: ProxyRequest) -> ProxyReply | None:
        if request.method != "GET" or "/referrers/" not in request.path:
            return None
        asked.append(request.path)
        listed = [signature] if request.path == f"/v2/team/app/referrers/{image}" else []
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX_TYPE, "manifests": listed}).encode()
        return ProxyReply(200, [("Content-Type", OCI_INDEX_TYPE)], body)

    proxy = RegistryProxy(src.host, before=before).start()
    try:
        cfg = transfer.config(["team/app:1.0"], src=proxy.host)
        code, first = transfer.run(cfg)
        assert code == 0, first
        assert [(i["source"], i["status"]) for i in first["items"]] == [
            (f"{proxy.host}/team/app:1.0", "copied"),
            (f"{proxy.host}/team/app@{signature['digest']}", "copied"),
        ]
        assert transfer.dst.get_manifest("team/app", signature["digest"]) == src.get_manifest(
            "team/app", signature["digest"]
        )
        assert asked == [f"/v2/team/app/referrers/{image}", f"/v2/team/app/referrers/{signature['digest']}"]

        code, second = transfer.run(cfg)
        assert code == 0 and second["counts"] == {"planned": 2, "copied": 0, "skipped": 2, "failed": 0}
        assert len(asked) == 4, "one referrers request per subject per run"
    finally:
        proxy.stop()


OCI_INDEX_TYPE = "application/vnd.oci.image.index.v1+json"


def test_a_manifest_skopeo_rewrites_fails_once_saying_why(
    transfer: Transfer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the index is not read before the copy (a Docker Hub source, simulated here by turning that
    read off), skopeo rewrites it: one attempt, a permanent failure with the reason, no retries."""
    from ecr_transfer.copier import Copier
    from ecr_transfer.local.oci import OCI_INDEX, Layer, write_index
    from support.artifacts import push_manifest

    monkeypatch.setattr(Copier, "_kept_exactly", lambda *_: None)
    src = transfer.src
    platforms = write_index(tmp_path / "layout", "multi", {("linux", "amd64"): [Layer.text("a.txt", "a")]})
    src.push(tmp_path / "layout", "multi", "team/tool", "base")
    amd64 = manifest_descriptor(src, "team/tool", platforms.children[0].digest)
    attestation = artifact(src, "team/tool", "application/vnd.in-toto+json", b"{}", amd64)
    pushed = push_manifest(src, "team/tool", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                              "manifests": [amd64, attestation]}, "v2")  # fmt: skip

    code, result = transfer.run(transfer.config(["team/tool:v2"]))

    assert code == 1
    (row,) = transfer.rows(result["run_id"])
    assert (row["status"], row["attempts"]) == ("failed", "1")
    assert row["error"].startswith("digest mismatch after copy: skopeo wrote sha256:")
    assert row["error"].endswith(
        f" for {pushed['digest']}: skopeo drops artifactType from the descriptors of this index; not retried"
    )


def test_referrer_types_copy_only_the_sbom_and_the_plan_says_what_was_left_out(
    transfer: Transfer, signed: Signed
) -> None:
    """`referrerTypes: [application/spdx+json]`: the SBOM travels (with the tag-schema index listing only
    it); the cosign signature of the image and the SBOM's own signature (and the index listing that
    one) stay behind, and `plan --json` lists each under "filtered" with its reason."""
    s, repo = transfer.src.host, "team/app"
    cfg = transfer.config(f"{s}/{repo}:1.0", referrerTypes=[SPDX])
    sig_type = "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert sig_type == SIGNATURE_ARTIFACT, "the SBOM's signature is a cosign signature in OCI 1.1 form"

    code, planned = transfer.plan(cfg)
    assert code == 0, planned
    assert [(i["source"], i["status"]) for i in planned["items"]] == [
        (f"{s}/{repo}:1.0", "copy"),
        (f"{s}/{repo}:{tag_of(signed.image)}", "copy"),
    ]
    assert planned["filtered"] == [
        {"source": f"{s}/{repo}:{tag_of(signed.image, '.sig')}",
         "reason": f"referrerTypes: {sig_type} (cosign's type for a .sig tag) is not listed"},
        {"source": f"{s}/{repo}:{tag_of(signed.sbom['digest'])}",
         "reason": f"referrerTypes: this referrers index also lists {sig_type}; "
                   "its entries of listed types are copied by digest"},
        {"source": f"{s}/{repo}@{signed.sbom_signature['digest']}",
         "reason": f"referrerTypes: {sig_type} is not listed"},
    ]  # fmt: skip

    # The terminal plan counts them.
    assert cli.main(["plan", "--config", str(cfg)]) == 0
    assert "3 referrers left out by referrerTypes (plan --json lists each with its reason)\n" in (
        transfer.capsys.readouterr().out
    )

    code, result = transfer.run(cfg)
    assert code == 0 and result["counts"]["copied"] == 2, result
    dst = transfer.dst
    assert dst.manifest_digest(repo, "1.0") == signed.image
    assert dst.manifest_digest(repo, tag_of(signed.image)) == signed.index["digest"]
    assert dst.get_manifest(repo, signed.sbom["digest"]) == transfer.src.get_manifest(repo, signed.sbom["digest"])
    assert sorted(dst.tags(repo)) == sorted(["1.0", tag_of(signed.image)])
    assert dst.get_manifest(repo, signed.signature["digest"]) is None
    assert dst.get_manifest(repo, signed.sbom_signature["digest"]) is None

    # Listing cosign's signature type too (the SBOM's signature is an OCI 1.1 artifact of that type)
    # brings the image's .sig tag and the SBOM's index with its signature on the next run; the rest stays.
    code, more = transfer.run(transfer.config(f"{s}/{repo}:1.0", referrerTypes=f"{SPDX}, {sig_type}"))
    assert code == 0 and more["counts"] == {"planned": 4, "copied": 2, "skipped": 2, "failed": 0}, more
    assert dst.manifest_digest(repo, tag_of(signed.image, ".sig")) == signed.signature["digest"]
    assert dst.manifest_digest(repo, tag_of(signed.sbom["digest"])) == signed.sbom_index["digest"]
    sbom_signature = signed.sbom_signature["digest"]
    assert dst.get_manifest(repo, sbom_signature) == transfer.src.get_manifest(repo, sbom_signature)


def test_referrers_of_index_children_travel_with_the_platforms_copied(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    """`cosign sign --recursive`: the index and each platform manifest carry a `.sig` tag. All travel
    with the index, byte for byte; with `platforms`, only the signatures of the platforms copied."""
    from ecr_transfer.local.oci import Layer, write_index

    src, dst = transfer.src, transfer.dst
    index = write_index(
        tmp_path / "layout", "multi", {("linux", a): [Layer.text(f"{a}.txt", a)] for a in ("amd64", "arm64")}
    )
    src.push(tmp_path / "layout", "multi", "team/tool", "v1")
    amd64, arm64 = (c.digest for c in index.children)
    sigs = {d: cosign_signature(src, "team/tool", d, d[-6:]) for d in (index.digest, amd64, arm64)}

    code, first = transfer.run(transfer.config(f"{src.host}/team/tool:v1"))
    assert code == 0, first
    reasons = {row["source"]: row["reason"] for row in transfer.rows(first["run_id"])}
    assert {k: v for k, v in reasons.items() if k.endswith(".sig")} == {
        f"{src.host}/team/tool:{tag_of(d, '.sig')}": f"referrer of {src.host}/team/tool@{d}: not at destination"
        for d in (index.digest, amd64, arm64)
    }
    for subject, sig in sigs.items():
        assert dst.manifest_digest("team/tool", tag_of(subject, ".sig")) == sig["digest"]
    code, again = transfer.run(transfer.config(f"{src.host}/team/tool:v1"))
    assert code == 0 and again["counts"] == {"planned": 4, "copied": 0, "skipped": 4, "failed": 0}

    # Only arm64 copied (a new index of it at mirror/...): the amd64 manifest's signature stays behind.
    code, subset = transfer.run(
        transfer.config(f"{src.host}/team/tool:v1", platforms=["linux/arm64"], destPrefix="arm")
    )
    assert code == 0, subset
    assert sorted(i["source"].rsplit(":", 1)[1] for i in subset["items"][1:]) == sorted(
        [tag_of(index.digest, ".sig"), tag_of(arm64, ".sig")]
    )
    assert dst.manifest_digest("arm/team/tool", tag_of(arm64, ".sig")) == sigs[arm64]["digest"]
    assert dst.manifest_digest("arm/team/tool", tag_of(amd64, ".sig")) is None
