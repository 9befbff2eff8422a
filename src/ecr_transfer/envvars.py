"""Every environment variable the product reads, in one place.

Names match the Data Transfer Hub stack parameters where one exists, upper-cased, so that the
Lambda/Fargate environment and the CLI's YAML file speak the same language.
"""

from __future__ import annotations

# Settings (Lambda / Fargate): same names as the YAML keys, SCREAMING_SNAKE_CASE.
SOURCE_TYPE = "SOURCE_TYPE"
SRC_LIST = "SRC_LIST"
SRC_IMAGE_LIST = "SRC_IMAGE_LIST"
SRC_REGION = "SRC_REGION"
SRC_ACCOUNT_ID = "SRC_ACCOUNT_ID"
SRC_CREDENTIAL = "SRC_CREDENTIAL"
SRC_ROLE_ARN = "SRC_ROLE_ARN"
SRC_EXTERNAL_ID = "SRC_EXTERNAL_ID"
DEST_TYPE = "DEST_TYPE"
DEST_REGISTRY = "DEST_REGISTRY"
DEST_REGION = "DEST_REGION"
DEST_ACCOUNT_ID = "DEST_ACCOUNT_ID"
DEST_PREFIX = "DEST_PREFIX"
DEST_CREDENTIAL = "DEST_CREDENTIAL"
DEST_ROLE_ARN = "DEST_ROLE_ARN"
DEST_EXTERNAL_ID = "DEST_EXTERNAL_ID"
INCLUDE_UNTAGGED = "INCLUDE_UNTAGGED"
INSECURE_REGISTRIES = "INSECURE_REGISTRIES"
CONCURRENCY = "CONCURRENCY"
REGISTRY_ENDPOINTS = "REGISTRY_ENDPOINTS"
REGISTRY_CA_BUNDLES = "REGISTRY_CA_BUNDLES"
SRC_IMAGE_LIST_PARAMETER = "SRC_IMAGE_LIST_PARAMETER"
REGISTRY_CA_PARAMETER = "REGISTRY_CA_PARAMETER"
TAG_INCLUDE = "TAG_INCLUDE"
TAG_EXCLUDE = "TAG_EXCLUDE"
TAG_SEMVER = "TAG_SEMVER"
TAG_LATEST = "TAG_LATEST"
PLATFORMS = "PLATFORMS"
COPY_REFERRERS = "COPY_REFERRERS"
REFERRER_TYPES = "REFERRER_TYPES"

# Runtime knobs.
LEDGER = "ECR_TRANSFER_LEDGER"
SKOPEO = "ECR_TRANSFER_SKOPEO"
MAX_ATTEMPTS = "ECR_TRANSFER_MAX_ATTEMPTS"
BACKOFF_BASE = "ECR_TRANSFER_BACKOFF_BASE"
COPY_TIMEOUT = "ECR_TRANSFER_COPY_TIMEOUT"
"""Seconds one skopeo copy may take before it is killed and retried (a stalled connection)."""
PLATFORM_COPIES = "ECR_TRANSFER_PLATFORM_COPIES"
"""Platforms of one multi-arch index copied at once, each by its own skopeo (default 4; 1: all in one)."""
BATCH_IMAGES = "ECR_TRANSFER_BATCH_IMAGES"
"""Most images one `skopeo sync` process copies (batches.py; default 50; 1: a `skopeo copy` per image)."""
COPIES_PER_TASK = "ECR_TRANSFER_COPIES_PER_TASK"
"""Fargate copier: skopeo processes a task runs at once over its batch (default 4)."""
LEDGER_LEASE_SECONDS = "ECR_TRANSFER_LEASE_SECONDS"
"""DynamoDB ledger: seconds a run's lease lives without a renewal (default 900)."""
STATE_MACHINE_ARN = "ECR_TRANSFER_STATE_MACHINE_ARN"
"""Push intake: the state machine a burst of pushes starts (one execution per burst)."""
FAST_PATH = "ECR_TRANSFER_FAST_PATH"
"""Lister: "true" sends a small push run's batches to the copier image in Lambda (stack parameter fastPath)."""
STACK_NAME = "ECR_TRANSFER_STACK"
"""The stack's name, the Stack dimension of every metric (ecr_transfer.metrics)."""

# Set by AWS Lambda itself: the copier knows it runs as the fast path, not on Fargate.
LAMBDA_FUNCTION_NAME = "AWS_LAMBDA_FUNCTION_NAME"

# Go's runtime: the batch copies' skopeo processes run on one thread each unless the user says otherwise.
GOMAXPROCS = "GOMAXPROCS"

# Where containers/image keeps skopeo's blob-info cache (skopeo_sync.memory_cache_env): XDG_DATA_HOME,
# honoured only for a user _CONTAINERS_ROOTLESS_UID says is not root.
XDG_DATA_HOME = "XDG_DATA_HOME"
CONTAINERS_ROOTLESS_UID = "_CONTAINERS_ROOTLESS_UID"

# containers-registries.conf(5): skopeo 1.9.3 reads it for some lookups (the --registries-conf flag for the rest).
CONTAINERS_REGISTRIES_CONF = "CONTAINERS_REGISTRIES_CONF"

# Standard containers/docker auth file locations, as skopeo/podman/docker read them.
REGISTRY_AUTH_FILE = "REGISTRY_AUTH_FILE"
XDG_RUNTIME_DIR = "XDG_RUNTIME_DIR"
DOCKER_CONFIG = "DOCKER_CONFIG"

# CA bundles OpenSSL and requests users set; both are added to the system store (registry/trust.py).
SSL_CERT_FILE = "SSL_CERT_FILE"
REQUESTS_CA_BUNDLE = "REQUESTS_CA_BUNDLE"
