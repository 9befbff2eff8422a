"""Docker credential helpers (credHelpers / credsStore), run as docker runs them (issue 12, item 3).

The helper is a real program on PATH speaking the helper protocol (tests/support/credhelper.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ecr_transfer.errors import PermanentError
from ecr_transfer.registry.authfiles import AuthFiles
from ecr_transfer.registry.credentials import Credential
from support.credhelper import install_helper


def _docker_config(tmp_path: Path, doc: dict[str, object]) -> dict[str, str]:
    directory = tmp_path / "docker"
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))
    return {"DOCKER_CONFIG": str(directory)}


def test_cred_helpers_win_and_run_once_per_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    helper = install_helper(tmp_path / "bin", monkeypatch)
    helper.holds("quay.io", "robot", "from-helper")
    stale = base64.b64encode(b"old:from-file").decode()
    env = _docker_config(tmp_path, {"auths": {"quay.io": {"auth": stale}}, "credHelpers": {"quay.io": "test"}})
    lookup = AuthFiles.load(env)

    found = lookup("quay.io")

    assert found == Credential("robot", "from-helper")
    assert found is not None and found.origin.startswith("credential helper docker-credential-test (credHelpers in")
    assert lookup("quay.io") == found
    assert helper.calls() == [["get", "quay.io"]]
    assert lookup("ghcr.io") is None  # no helper named for it, no login written


def test_creds_store_answers_for_every_host_docker_hub_under_its_index_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = install_helper(tmp_path / "bin", monkeypatch)
    helper.holds("https://index.docker.io/v1/", "hubuser", "hub-token")
    env = _docker_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {}}, "credsStore": "test"})
    lookup = AuthFiles.load(env)

    assert lookup("docker.io") == Credential("hubuser", "hub-token")
    assert lookup("127.0.0.1:5000") is None  # "credentials not found": anonymous, not an error
    assert helper.calls() == [["get", "https://index.docker.io/v1/"], ["get", "127.0.0.1:5000"]]


def test_a_missing_or_failing_helper_is_a_permanent_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_helper(tmp_path / "bin", monkeypatch)
    env = _docker_config(tmp_path, {"credsStore": "desktop", "credHelpers": {"gcr.io": "test"}})
    (tmp_path / "bin" / "store.json").write_text("not json")  # the helper crashes
    lookup = AuthFiles.load(env)

    with pytest.raises(PermanentError) as missing:
        lookup("quay.io")
    assert str(missing.value) == (
        f"quay.io: credential helper docker-credential-desktop (credsStore in {tmp_path}/docker/config.json) "
        "is not installed or not on PATH"
    )
    with pytest.raises(PermanentError, match=r"gcr.io: credential helper docker-credential-test \(credHelpers in .*"
                       r"\) failed: json.decoder.JSONDecodeError"):  # fmt: skip
        lookup("gcr.io")
