"""Signatures, SBOMs and referrers indexes written by Python and pushed with plain HTTP requests.

Independent of the product's registry client on purpose: the test builds the source by one path
and checks what the product copied by another.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from ecr_transfer.local.oci import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, canonical_json, sha256_digest
from ecr_transfer.local.registry import LocalRegistry

EMPTY = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ARTIFACT = "application/vnd.dev.cosign.artifact.sig.v1+json"


def _request(registry: LocalRegistry, method: str, path: str, data: bytes = b"", content_type: str = "") -> Any:
    url = path if path.startswith("http") else registry.url + path
    request = urllib.request.Request(url, data=data if method in ("PUT", "POST") else None, method=method)
    # An ECR emulator's front door (a FrontDoor) wants its registry token on every request.
    authorization = getattr(registry, "authorization", None)
    if authorization:
        request.add_header("Authorization", authorization)
    if content_type:
        request.add_header("Content-Type", content_type)
    return urllib.request.urlopen(request, timeout=10)


def push_blob(registry: LocalRegistry, repo: str, data: bytes) -> dict[str, Any]:
    """Upload a blob; returns its descriptor (without mediaType)."""
    digest = sha256_digest(data)
    with _request(registry, "POST", f"/v2/{repo}/blobs/uploads/") as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    # An explicit type: urllib's default (form-urlencoded) makes the registry read the body as a form.
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    with _request(registry, "PUT", url, data, "application/octet-stream") as response:
        assert response.status == 201
    return {"digest": digest, "size": len(data)}


def push_manifest(registry: LocalRegistry, repo: str, doc: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
    """PUT a manifest or index (by tag, or by its digest); returns its descriptor."""
    body = canonical_json(doc)
    digest = sha256_digest(body)
    media_type = doc["mediaType"]
    with _request(registry, "PUT", f"/v2/{repo}/manifests/{tag or digest}", body, media_type) as response:
        assert response.status == 201, response.status
    return {"mediaType": media_type, "digest": digest, "size": len(body)}


def cosign_signature(
    registry: LocalRegistry, repo: str, subject: str, text: str, suffix: str = ".sig"
) -> dict[str, Any]:
    """A cosign-style signature `sha256-<hex>.sig` (or `.att`) of `subject` (simple signing payload + annotation)."""
    config = {**push_blob(registry, repo, canonical_json({"architecture": "", "os": ""})), "mediaType": OCI_CONFIG}
    payload = canonical_json({"critical": {"image": {"docker-manifest-digest": subject}}, "optional": {"n": text}})
    layer = {
        **push_blob(registry, repo, payload),
        "mediaType": COSIGN_SIMPLESIGNING,
        "annotations": {"dev.cosignproject.cosign/signature": f"MEUCIQ{text}=="},
    }
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
    return push_manifest(registry, repo, doc, f"{subject.replace(':', '-')}{suffix}")


def artifact(
    registry: LocalRegistry, repo: str, artifact_type: str, content: bytes, subject: dict[str, Any]
) -> dict[str, Any]:
    """An OCI 1.1 artifact manifest (empty config, one layer) referring to `subject`, pushed by digest."""
    empty = {**push_blob(registry, repo, b"{}"), "mediaType": EMPTY}
    layer = {**push_blob(registry, repo, content), "mediaType": artifact_type}
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty,
        "layers": [layer],
        "subject": subject,
    }
    return {**push_manifest(registry, repo, doc), "artifactType": artifact_type}


def referrers_index(
    registry: LocalRegistry, repo: str, subject: str, referrers: list[dict[str, Any]]
) -> dict[str, Any]:
    """The OCI 1.1 tag-schema fallback `sha256-<hex>`: an index whose descriptors carry artifactType."""
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": referrers}
    return push_manifest(registry, repo, doc, subject.replace(":", "-"))


def manifest_descriptor(registry: LocalRegistry, repo: str, reference: str) -> dict[str, Any]:
    body = registry.get_manifest(repo, reference) or b""
    return {"mediaType": json.loads(body)["mediaType"], "digest": sha256_digest(body), "size": len(body)}
