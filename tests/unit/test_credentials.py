from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from ecr_transfer.errors import ConfigError
from ecr_transfer.registry.authfiles import load_auth_files
from ecr_transfer.registry.credentials import (
    Credential,
    resolve_secret,
    temporary_authfile,
)


def _auth(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_auth_file_order_and_hub_normalisation(tmp_path: Path) -> None:
    first = tmp_path / "auth.json"
    first.write_text(json.dumps({"auths": {"quay.io": _auth("q", "1")}}))
    xdg = tmp_path / "xdg" / "containers"
    xdg.mkdir(parents=True)
    (xdg / "auth.json").write_text(json.dumps({"auths": {"quay.io": _auth("other", "2"), "ghcr.io": _auth("g", "3")}}))
    docker = tmp_path / "docker"
    docker.mkdir()
    (docker / "config.json").write_text(json.dumps({"auths": {"https://index.docker.io/v1/": _auth("d", "4")}}))
    found = load_auth_files(
        {"REGISTRY_AUTH_FILE": str(first), "XDG_RUNTIME_DIR": str(tmp_path / "xdg"), "DOCKER_CONFIG": str(docker)}
    )
    assert found == {
        "quay.io": Credential("q", "1"),
        "ghcr.io": Credential("g", "3"),
        "docker.io": Credential("d", "4"),
    }


def test_credential_repr_hides_password() -> None:
    assert "s3cret" not in repr(Credential("u", "s3cret"))


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"access_key_id": "AK"}, "secret is missing secret_access_key"),
        ({"username": "u"}, "secret is missing password (expected username/password, token"),
        ([1, 2], "secret is not a JSON object"),
    ],
)
def test_a_malformed_secret_is_refused_naming_what_is_missing(tmp_path: Path, doc: object, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as info:
        resolve_secret(f"file:{path}")
    assert str(info.value).startswith(f"file:{path}: {message}")


def test_secrets_hold_a_login_a_token_or_aws_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REG_SECRET", json.dumps({"username": "u", "password": "p", "registry": "docker.io"}))
    doc = resolve_secret("env:REG_SECRET")
    assert doc.credential == Credential("u", "p") and doc.registry == "docker.io"
    keys = resolve_secret("x", lambda name: json.dumps({"access_key_id": "AK", "secret_access_key": "SK"}))
    assert (keys.aws_access_key_id, keys.aws_secret_access_key) == ("AK", "SK")
    with pytest.raises(ConfigError, match="a secret name needs AWS Secrets Manager"):
        resolve_secret("plain-name")


def test_temporary_authfile_is_private_and_removed() -> None:
    with temporary_authfile({"r:1": Credential("u", "p")}) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert json.loads(path.read_text()) == {"auths": {"r:1": {"auth": base64.b64encode(b"u:p").decode()}}}
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(RuntimeError), temporary_authfile({}) as failing:
        raise RuntimeError("copy failed")
    assert not failing.parent.exists()
