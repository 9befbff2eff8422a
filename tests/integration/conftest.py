"""Integration helpers: a recording skopeo wrapper and a settings-file writer."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_transfer.local.registry import LocalRegistry
from support.corpus import Corpus
from support.skopeo_wrapper import Skopeo, install


class SkopeoRecorder:
    """Every skopeo invocation's argv, recorded by a wrapper that then runs the real skopeo."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def copies(self) -> list[list[str]]:
        """One per image: the copy that writes the tag (`--all`, or the index after its platforms)."""
        return [c for c in self.calls() if "copy" in c and "@" not in c[-1]]

    def platform_copies(self) -> list[list[str]]:
        """Platforms of an index copied on their own, by digest, before the index."""
        return [c for c in self.calls() if "copy" in c and "@" in c[-1]]


@pytest.fixture
def skopeo_recorder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SkopeoRecorder:
    real = shutil.which("skopeo")
    assert real, "skopeo is not installed"
    log = tmp_path / "skopeo-argv.jsonl"
    wrapper = tmp_path / "skopeo-wrapper"
    wrapper.write_text(
        f"#!{sys.executable} -SE\n"  # not through a pyenv shim: that costs ~0.35 s a call
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"os.execv({real!r}, [{real!r}] + sys.argv[1:])\n"
    )
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("ECR_TRANSFER_SKOPEO", str(wrapper))
    # Retries in tests: fast backoff, same attempt count as production.
    monkeypatch.setenv("ECR_TRANSFER_BACKOFF_BASE", "0.05")
    return SkopeoRecorder(log)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str = "transfer.yaml", **settings: Any) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        return path

    return write


@pytest.fixture
def config(
    src_registry: LocalRegistry, dst_registry: LocalRegistry, write_config: Callable[..., Path]
) -> Callable[..., Path]:
    """A CLI config file copying `image_list` from src_registry to dst_registry (both plain HTTP)."""

    def make(image_list: str, **extra: Any) -> Path:
        settings = {
            "sourceType": "Public",
            "srcImageList": image_list,
            "destType": "Registry",
            "destRegistry": dst_registry.host,
            "insecureRegistries": [src_registry.host, dst_registry.host],
            **extra,
        }
        return write_config(**settings)

    return make


@pytest.fixture(autouse=True)
def _isolated_auth_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own docker/podman logins must not leak into tests."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    os.environ.pop("ECR_TRANSFER_LEDGER", None)


# Each fault/crash/concurrency module defines its own module-scoped `corpus` (sizes differ);
# these build on whichever one the requesting module has.
@pytest.fixture
def corpus_src(corpus: Corpus, registry_factory: Callable[..., LocalRegistry], tmp_path: Path) -> LocalRegistry:
    """A fresh source registry holding a clone of the module's corpus."""
    return corpus.clone(lambda root: registry_factory(root_dir=root), tmp_path / "src-storage")


@pytest.fixture
def skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Skopeo:
    """The recording skopeo wrapper of tests/support (argv, pid, authfile modes)."""
    return install(tmp_path, monkeypatch)
