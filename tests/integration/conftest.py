"""Integration helpers: a recording skopeo wrapper, settings files, secrets and the CLI harness."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_transfer import cli
from ecr_transfer.local.oci import SampleImages
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
        entries = [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
        return [e for e in entries if isinstance(e, list)]

    def copies(self) -> list[list[str]]:
        """One per image: the copy that writes the tag (`--all`, or the index after its platforms)."""
        return [c for c in self.calls() if "copy" in c and "@" not in c[-1]]

    def images(self) -> list[str]:
        """Destination of every image skopeo was asked to copy: one per `copy` of a tag, and one per
        image in a `skopeo sync` batch (from its source YAML), without the scheme."""
        if not self.log.exists():
            return []
        found: list[str] = []
        for line in self.log.read_text().splitlines():
            entry = json.loads(line) if line.strip() else None
            if isinstance(entry, dict):
                found += entry["synced"]
            elif entry and "copy" in entry and "@" not in entry[-1]:
                found.append(entry[-1].removeprefix("docker://"))
        return found

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
        "args = sys.argv[1:]\n"
        "lines = [args]\n"
        "if 'sync' in args:\n"  # a batch: its images are in the source YAML (JSON), gone afterwards
        "    doc = json.load(open(args[-2]))\n"
        "    lines.append({'synced': [f\"{args[-1]}/{r.rsplit('/', 1)[-1]}:{t}\"\n"
        "                  for reg in doc.values() for r, ts in reg['images'].items() for t in ts]})\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(''.join(json.dumps(line) + '\\n' for line in lines))\n"
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
    """A CLI config file copying `image_list` from src_registry to dst_registry (both plain HTTP).

    `image_list` is the srcImageList text, or a list of `repo:tag` on the source host; `src` and
    `dst` name other hosts (a proxy, a registry with logins) to copy from and to.
    """

    def make(image_list: str | Sequence[str], *, src: str | None = None, dst: str | None = None, **extra: Any) -> Path:
        src_host, dst_host = src or src_registry.host, dst or dst_registry.host
        images = image_list if isinstance(image_list, str) else "\n".join(f"{src_host}/{r}" for r in image_list)
        settings = {
            "sourceType": "Public",
            "srcImageList": images,
            "destType": "Registry",
            "destRegistry": dst_host,
            "insecureRegistries": [src_host, dst_host],
            **extra,
        }
        return write_config(**settings)

    return make


@pytest.fixture
def login_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """A registry login kept where srcCredential/destCredential can name it.

    `login_secret(user, password)` -> `file:PATH` (mode 0600); with `env="NAME"`, `env:NAME`; with
    `token=...`, a token secret instead of a password.
    """

    def make(username: str | None = None, password: str | None = None, *, token: str | None = None,
             env: str | None = None) -> str:  # fmt: skip
        doc = {k: v for k, v in (("username", username), ("password", password), ("token", token)) if v}
        if env:
            monkeypatch.setenv(env, json.dumps(doc))
            return f"env:{env}"
        path = tmp_path / f"login-{len(list(tmp_path.glob('login-*')))}.json"
        path.write_text(json.dumps(doc))
        path.chmod(0o600)
        return f"file:{path}"

    return make


@dataclass
class Transfer:
    """Two fresh registries with the sample images, a config writer and the CLI in-process.

    It carries the fixtures end-to-end tests keep asking for together, so a test names one.
    """

    src: LocalRegistry
    dst: LocalRegistry
    images: SampleImages
    seed: Callable[..., dict[str, str]]
    """`seed({"team/app:1": "app-a"}, registry=None)` -> {ref: digest} (pushes to src by default)."""
    config: Callable[..., Path]
    """The `config` fixture: `config(image_list, src=None, dst=None, **settings)`."""
    ledger: Path
    capsys: pytest.CaptureFixture[str]
    write_config: Callable[..., Path]
    """The `write_config` fixture: any settings, no defaults."""
    registries: Callable[..., LocalRegistry]
    """The `registry_factory` fixture: `registries(auth=("user", "password"))` for more registries."""
    secret: Callable[..., str]
    """The `login_secret` fixture."""
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch

    def cli(self, *args: str) -> tuple[int, dict[str, Any]]:
        """`ecr-transfer ARGS --json`: exit code and the JSON printed ({} when nothing was)."""
        code = cli.main([*args, "--json"])
        out = self.capsys.readouterr().out
        return code, json.loads(out) if out.strip() else {}

    def run(self, cfg: Path, *args: str, ledger: Path | str | None = None) -> tuple[int, dict[str, Any]]:
        return self.cli("run", "--config", str(cfg), "--ledger", str(ledger or self.ledger), *args)

    def plan(self, cfg: Path, *args: str) -> tuple[int, dict[str, Any]]:
        return self.cli("plan", "--config", str(cfg), *args)

    def rows(self, run_id: str) -> list[sqlite3.Row]:
        """One run's outcome rows in the ledger."""
        db = sqlite3.connect(self.ledger)
        db.row_factory = sqlite3.Row
        try:
            return db.execute("SELECT * FROM outcomes WHERE run_id = ?", (run_id,)).fetchall()
        finally:
            db.close()


@pytest.fixture
def transfer(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    oci_images: SampleImages,
    seeded_src: Callable[..., dict[str, str]],
    config: Callable[..., Path],
    write_config: Callable[..., Path],
    registry_factory: Callable[..., LocalRegistry],
    login_secret: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Transfer:
    return Transfer(
        src=src_registry,
        dst=dst_registry,
        images=oci_images,
        seed=seeded_src,
        config=config,
        ledger=tmp_path / "ledger.db",
        capsys=capsys,
        write_config=write_config,
        registries=registry_factory,
        secret=login_secret,
        tmp_path=tmp_path,
        monkeypatch=monkeypatch,
    )


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
