"""Amazon ECR's OCI 1.1 referrers API for the ECR emulator, answered from what ECR's control plane holds.

distribution 2.8 (the emulator's backend) has no referrers API; ECR has (OCI 1.1 since June 2024).
Every manifest pushed through the emulator's front door is registered in moto with its exact bytes,
so the answer is computed as ECR computes it: the manifests of the repository whose `subject` is the
digest asked for, each as a descriptor carrying its artifact type (`artifactType`, else the config's
mediaType). Nothing is canned: a referrer not pushed is not listed. Auth is ECR's: the registry token
(Basic `AWS:<token>`), else 401 with a Basic challenge.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .registry_proxy import ProxyReply, ProxyRequest

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_REFERRERS = re.compile(r"^/v2/(?P<repo>.+)/referrers/(?P<digest>sha256:[a-f0-9]{64})(?:\?.*)?$")
_ACCEPT = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
]


def _json(status: int, doc: dict[str, Any], content_type: str = "application/json; charset=utf-8") -> ProxyReply:
    return ProxyReply(status, [("Content-Type", content_type)], json.dumps(doc).encode())


def answer(request: ProxyRequest, *, host: str, ecr: Any, authorization: str) -> ProxyReply | None:
    """ECR's reply to GET /v2/<repo>/referrers/<digest>; None for any other request."""
    route = _REFERRERS.match(request.path)
    if request.method != "GET" or route is None:
        return None
    if request.header("Authorization") != authorization:
        challenge = f'Basic realm="https://{host}/",service="ecr.amazonaws.com"'
        reply = _json(401, {"errors": [{"code": "DENIED", "message": "Not Authorized"}]})
        reply.headers.append(("WWW-Authenticate", challenge))
        return reply
    repo, subject = route["repo"], route["digest"]
    try:
        pages = ecr.get_paginator("describe_images").paginate(repositoryName=repo, filter={"tagStatus": "ANY"})
        digests = sorted({d["imageDigest"] for page in pages for d in page["imageDetails"]})
    except ecr.exceptions.RepositoryNotFoundException:
        message = f"The repository with name '{repo}' does not exist in the registry"
        return _json(404, {"errors": [{"code": "NAME_UNKNOWN", "message": message}]})
    listed = []
    for start in range(0, len(digests), 100):
        chunk = [{"imageDigest": d} for d in digests[start : start + 100]]
        images = ecr.batch_get_image(repositoryName=repo, imageIds=chunk, acceptedMediaTypes=_ACCEPT)["images"]
        for image in images:
            body = image["imageManifest"].encode()
            doc = json.loads(body)
            if (doc.get("subject") or {}).get("digest") != subject:
                continue
            descriptor = {
                "mediaType": doc.get("mediaType"),
                "digest": image["imageId"]["imageDigest"],
                "size": len(body),
            }
            artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact_type:
                descriptor["artifactType"] = artifact_type
            if doc.get("annotations"):
                descriptor["annotations"] = doc["annotations"]
            listed.append(descriptor)
    return _json(200, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}, OCI_INDEX)
