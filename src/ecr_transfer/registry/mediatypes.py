"""Manifest media types: every one is accepted, so a HEAD answers with the digest that is stored."""

from __future__ import annotations

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"

MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_V2, DOCKER_V1_SIGNED, DOCKER_V1)
ACCEPT = ", ".join(MANIFEST_TYPES)
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
