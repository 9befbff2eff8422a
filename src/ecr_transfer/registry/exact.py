"""Copy a small artifact byte for byte through the registry API: blobs first, then child manifests,
then the manifest itself, by tag or digest.

For signatures, SBOMs and attestations (referrers), which skopeo 1.9.3 does not always copy
exactly: it rewrites an OCI index whose descriptors carry `artifactType` (the tag-schema
referrers index), which would then never match its source and be copied again on every run.
Artifacts are small (kilobytes), so blobs are read into memory, with a cap that says so.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from urllib.parse import urljoin

from ecr_transfer.errors import PermanentError, TransientError
from ecr_transfer.registry.client import RegistryClient
from ecr_transfer.registry.mediatypes import INDEX_TYPES, OCI_INDEX, OCI_MANIFEST

MAX_ARTIFACT_BLOB = 64 * 1024 * 1024
"""A referrer's blob larger than this is not copied through memory (images go through skopeo)."""
MAX_DEPTH = 4


def get_blob(client: RegistryClient, repository: str, digest: str) -> bytes:
    what = f"blob {client.registry}/{repository}@{digest}"
    url = f"{client.base_url()}/v2/{repository}/blobs/{digest}"
    resp = client._request("GET", url, f"repository:{repository}:pull", what)
    if resp.status != 200:
        client._raise_for(resp, what)
    data: bytes = resp.data
    if len(data) > MAX_ARTIFACT_BLOB:
        raise PermanentError(f"{what}: {len(data)} bytes, more than an artifact copied in memory may have")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise TransientError(f"{what}: the bytes read do not have that digest")
    return data


def upload_blob(client: RegistryClient, repository: str, digest: str, data: bytes) -> None:
    """Monolithic upload (POST, then PUT with the digest): every registry takes it."""
    what = f"blob upload {client.registry}/{repository}@{digest}"
    scope = f"repository:{repository}:pull,push"
    resp = client._request("POST", f"{client.base_url()}/v2/{repository}/blobs/uploads/", scope, what, b"", None)
    if resp.status != 202 or not resp.headers.get("Location"):
        client._raise_for(resp, what)
    location = urljoin(client.base_url() + "/", resp.headers["Location"])
    url = f"{location}{'&' if '?' in location else '?'}digest={digest}"
    resp = client._request("PUT", url, scope, what, data, "application/octet-stream")
    if resp.status not in (201, 204):
        client._raise_for(resp, what)


def _media_type(doc: dict[str, object]) -> str:
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def copy_exact(
    source: RegistryClient,
    destination: RegistryClient,
    src_repository: str,
    dst_repository: str,
    digest: str,
    tag: str | None = None,
    depth: int = 0,
) -> str:
    """Copy manifest `digest` (and all it references) and PUT it as `tag` (or by digest); returns its digest."""
    body = source.get_manifest(src_repository, digest)
    if body is None:
        raise PermanentError(f"manifest {source.registry}/{src_repository}@{digest}: not found at the source")
    try:
        doc = json.loads(body)
    except ValueError:
        raise PermanentError(f"manifest {source.registry}/{src_repository}@{digest}: not JSON") from None
    media_type = _media_type(doc)
    if media_type in INDEX_TYPES:
        if depth >= MAX_DEPTH:
            raise PermanentError(f"manifest {source.registry}/{src_repository}@{digest}: indexes nested too deep")
        for child in doc.get("manifests") or []:
            child_digest = str(child["digest"])
            if destination.head_manifest(dst_repository, child_digest) is None:
                copy_exact(source, destination, src_repository, dst_repository, child_digest, None, depth + 1)
    else:
        blobs = [doc["config"]] if isinstance(doc.get("config"), dict) else []
        blobs += [b for b in doc.get("layers") or [] if isinstance(b, dict)]
        for blob in blobs:
            blob_digest = str(blob["digest"])
            if not destination.has_blob(dst_repository, blob_digest):
                upload_blob(destination, dst_repository, blob_digest, get_blob(source, src_repository, blob_digest))
    return destination.put_manifest(dst_repository, tag or digest, body, media_type)


_NO_REFERRERS_API: weakref.WeakSet[RegistryClient] = weakref.WeakSet()
"""Clients whose registry answered the referrers API with 404 (distribution 2.8): asked once per run."""


def list_referrers(client: RegistryClient, repository: str, digest: str) -> list[dict[str, object]] | None:
    """OCI 1.1 `GET /v2/<name>/referrers/<digest>`: the descriptors of what refers to `digest`.

    None when the registry has no referrers API. A registry that has it answers 200 with an
    index (possibly empty) for any digest, so a 404 means the API itself is missing.
    """
    if client in _NO_REFERRERS_API:
        return None
    what = f"referrers of {client.registry}/{repository}@{digest}"
    url: str | None = f"{client.base_url()}/v2/{repository}/referrers/{digest}"
    found: list[dict[str, object]] = []
    while url:
        resp = client._request("GET", url, f"repository:{repository}:pull", what)
        if resp.status in (404, 405, 501):
            _NO_REFERRERS_API.add(client)
            return None
        if resp.status != 200:
            client._raise_for(resp, what)
        try:
            doc = json.loads(resp.data)
        except ValueError:
            raise TransientError(f"{what}: not an index") from None
        found += [m for m in doc.get("manifests") or [] if isinstance(m, dict) and "digest" in m]
        link = resp.headers.get("Link", "")
        url = urljoin(client.base_url() + "/", link.split(";")[0].strip("<> ")) if 'rel="next"' in link else None
    return found
