"""Shared fixtures: real registries on loopback and prebuilt OCI images.

Every test under tests/integration, and every test that asks for a registry fixture, is marked
`integration` and skipped (with the reason) when docker-registry or skopeo is missing.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Protocol

import pytest

from ecr_transfer.local.oci import SampleImages, write_samples
from ecr_transfer.local.registry import REGISTRY_BIN, SKOPEO_BIN, Credentials, LocalRegistry

_INTEGRATION_DIR = Path(__file__).parent / "integration"
_REGISTRY_FIXTURES = frozenset({"registry_factory", "src_registry", "dst_registry", "auth_registry", "seeded_src"})
_FAILED = pytest.StashKey[bool]()
_MISSING_TOOLS = [tool for tool in (REGISTRY_BIN, SKOPEO_BIN, "htpasswd") if shutil.which(tool) is None]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(
        reason=f"needs {', '.join(_MISSING_TOOLS)} on PATH (apt-get install skopeo docker-registry apache2-utils)"
    )
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.is_relative_to(_INTEGRATION_DIR) or fixtures & _REGISTRY_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if _MISSING_TOOLS and item.get_closest_marker("integration") is not None:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Lets registry_factory know at teardown whether the test failed.
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


class RegistryFactory(Protocol):
    def __call__(
        self,
        *,
        auth: Credentials | tuple[str, str] | None = None,
        root_dir: str | Path | None = None,
        port: int | None = None,
    ) -> LocalRegistry: ...


class Seeder(Protocol):
    def __call__(self, images: Mapping[str, str], registry: LocalRegistry | None = None) -> dict[str, str]: ...


@pytest.fixture
def registry_factory(request: pytest.FixtureRequest) -> Iterator[RegistryFactory]:
    """Start LocalRegistry instances (~40 ms each); all are stopped and wiped at teardown."""
    started: list[LocalRegistry] = []

    def factory(
        *,
        auth: Credentials | tuple[str, str] | None = None,
        root_dir: str | Path | None = None,
        port: int | None = None,
    ) -> LocalRegistry:
        registry = LocalRegistry(auth=auth, root_dir=root_dir, port=port).start()
        started.append(registry)
        return registry

    yield factory
    failed = request.node.stash.get(_FAILED, False)
    for registry in started:
        if failed and registry.running:
            # Shown under "Captured stdout teardown": what the registry saw when the test failed.
            tail = [f"{r.method} {r.uri} -> {r.status}" for r in registry.requests(sync=False)[-30:]]
            print(f"--- {registry!r} last requests:\n" + "\n".join(tail))
            # Info lines repeat the access log; warnings and errors are the news.
            news = [x for x in registry.stderr_tail(500).splitlines() if "level=info" not in x][-10:]
            print(f"--- {registry!r} warnings and errors:\n" + "\n".join(news))
        registry.stop()


@pytest.fixture
def src_registry(registry_factory: RegistryFactory) -> LocalRegistry:
    """A fresh, empty, anonymous registry to copy from."""
    return registry_factory()


@pytest.fixture
def dst_registry(registry_factory: RegistryFactory) -> LocalRegistry:
    """A fresh, empty, anonymous registry to copy to."""
    return registry_factory()


@pytest.fixture
def auth_registry(registry_factory: RegistryFactory) -> LocalRegistry:
    """A fresh registry with htpasswd basic auth; `.username`, `.password`, `.credentials`."""
    return registry_factory(auth=Credentials("ecr-test", secrets.token_urlsafe(12)))


@pytest.fixture(scope="session")
def oci_images(tmp_path_factory: pytest.TempPathFactory) -> SampleImages:
    """One layout with tags "single", "multi" (amd64+arm64 index), "app-a" and "app-b" (shared base)."""
    return write_samples(tmp_path_factory.mktemp("oci-images"))


@pytest.fixture
def seeded_src(src_registry: LocalRegistry, oci_images: SampleImages) -> Seeder:
    """Push sample images: `seeded_src({"team/app:1.0": "app-a", "tools/x": "multi"})`.

    Keys are `repo:tag`, or a bare `repo` to push by digest (untagged); values are sample tags.
    Pushes into src_registry unless `registry=` is given. Returns {key: digest}.
    """

    def seed(images: Mapping[str, str], registry: LocalRegistry | None = None) -> dict[str, str]:
        target = registry or src_registry
        digests: dict[str, str] = {}
        for ref, sample in images.items():
            repo, _, tag = ref.partition(":")
            digests[ref] = target.push(oci_images.layout, sample, repo, tag or None)
        return digests

    return seed
