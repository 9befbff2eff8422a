from __future__ import annotations

from pathlib import Path

import pytest

from ecr_transfer.errors import ConflictError, PermanentError, TransientError
from ecr_transfer.skopeo import CopyRequest, build_argv, classify, registries_conf_text


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        (
            'level=fatal msg="initializing source docker://a/b:1: reading manifest 1 in a/b: manifest unknown"',
            PermanentError,
        ),
        ("Error: writing manifest: uploading manifest 1 to x: unauthorized: authentication required", PermanentError),
        ("name unknown: The repository with name 'x' does not exist in the registry with id '1'", PermanentError),
        (
            "tag invalid: The image tag '1' already exists in the 'x' repository and cannot be overwritten because the "
            "tag is immutable.",
            ConflictError,
        ),
        ("toomanyrequests: You have reached your pull rate limit.", TransientError),
        (
            'pinging container registry x: Get "https://x/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            TransientError,
        ),
        ("received unexpected HTTP status: 503 Service Unavailable", TransientError),
        ("something nobody has seen before", TransientError),
    ],
)
def test_skopeo_failures_are_classified_transient_permanent_or_conflict(stderr: str, kind: type[Exception]) -> None:
    error = classify(stderr, 1)
    assert type(error) is kind


def test_classify_keeps_the_full_cause() -> None:
    stderr = 'time="2026" level=fatal msg="copying: reading blob sha256:1: fetching blob: 500 \\"boom\\""\n'
    assert str(classify(stderr, 1)) == 'copying: reading blob sha256:1: fetching blob: 500 "boom"'


def test_argv_never_holds_credentials(tmp_path: Path) -> None:
    argv = build_argv(
        CopyRequest("a:1/r:t", "b:2/r:t", authfile=tmp_path / "auth.json", src_insecure=True), tmp_path / "d"
    )
    assert "--all" in argv
    assert "--src-tls-verify=false" in argv and "--dest-tls-verify=false" not in argv
    assert not any(a.startswith("--src-creds") or a.startswith("--dest-creds") or a == "--creds" for a in argv)
    assert argv[-2:] == ["docker://a:1/r:t", "docker://b:2/r:t"]
    single = build_argv(CopyRequest("a/r:t", "b/r:t", all_platforms=False), tmp_path / "d")
    assert "--all" not in single


def test_registries_conf_points_an_ecr_host_at_its_endpoint() -> None:
    text = registries_conf_text({"1.dkr.ecr.us-east-1.amazonaws.com": "http://127.0.0.1:5000/"}, ["127.0.0.1:5000"])
    assert text == (
        '[[registry]]\nprefix = "1.dkr.ecr.us-east-1.amazonaws.com"\nlocation = "127.0.0.1:5000"\ninsecure = true\n'
    )
