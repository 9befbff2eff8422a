"""The shared infrastructure against real docker-registry and skopeo: digests, auth, access log, restart."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ecr_transfer.local.accesslog import RequestKind, classify, count_kinds, parse_access_log
from ecr_transfer.local.oci import OCI_INDEX, SampleImages, read_blob
from ecr_transfer.local.registry import Credentials, LocalRegistry, LocalRegistryError

if TYPE_CHECKING:
    from tests.conftest import RegistryFactory, Seeder

pytestmark = pytest.mark.integration
K = RequestKind


def _status(url: str, auth: Credentials | None = None) -> int:
    req = urllib.request.Request(url)
    if auth is not None:
        req.add_header("Authorization", "Basic " + auth.basic())
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return err.code


# -- pushing OCI layouts keeps the digests we computed ---------------------------------------------


def test_single_platform_push_keeps_digest_and_bytes(src_registry: LocalRegistry, oci_images: SampleImages) -> None:
    image = oci_images.single
    assert src_registry.push(oci_images.layout, "single", "team/single", "v1") == image.digest
    assert src_registry.manifest_digest("team/single", "v1") == image.digest
    assert src_registry.get_manifest("team/single", "v1") == read_blob(oci_images.layout, image.digest)
    assert all(src_registry.blob_exists("team/single", d) for d in image.blob_digests)
    assert src_registry.tags("team/single") == ["v1"]
    assert src_registry.catalog() == ["team/single"]


def test_multi_arch_push_keeps_index_digest(src_registry: LocalRegistry, oci_images: SampleImages) -> None:
    index = oci_images.multi
    src_registry.push(oci_images.layout, "multi", "team/multi", "v1")
    assert src_registry.manifest_digest("team/multi", "v1") == index.digest
    stored = json.loads(src_registry.get_manifest("team/multi", "v1") or b"{}")
    assert stored["mediaType"] == OCI_INDEX
    for child in index.children:
        assert src_registry.manifest_digest("team/multi", child.digest) == child.digest
        assert all(src_registry.blob_exists("team/multi", d) for d in child.blob_digests)


def test_push_without_all_keeps_only_the_amd64_child(src_registry: LocalRegistry, oci_images: SampleImages) -> None:
    # The field-notes trap: without --all the tag points to a child and the index is lost.
    src_registry.push(oci_images.layout, "multi", "team/multi", "v1", all_platforms=False)
    amd64 = oci_images.multi.child(("linux", "amd64"))
    assert src_registry.manifest_digest("team/multi", "v1") == amd64.digest
    assert src_registry.manifest_digest("team/multi", oci_images.multi.digest) is None


def test_seeded_src_tagged_and_untagged(
    seeded_src: Seeder, src_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    digests = seeded_src({"apps/a:1.0": "app-a", "apps/a:latest": "app-a", "apps/b": "app-b", "tools/m:2": "multi"})
    assert digests == {
        "apps/a:1.0": oci_images.app_a.digest,
        "apps/a:latest": oci_images.app_a.digest,
        "apps/b": oci_images.app_b.digest,
        "tools/m:2": oci_images.multi.digest,
    }
    assert sorted(src_registry.tags("apps/a")) == ["1.0", "latest"]
    assert src_registry.tags("apps/b") == []
    assert src_registry.manifest_digest("apps/b", oci_images.app_b.digest) == oci_images.app_b.digest
    assert src_registry.tags("no/such/repo") == []


def test_seeded_src_into_another_registry(
    seeded_src: Seeder, dst_registry: LocalRegistry, src_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    seeded_src({"x:1": "single"}, registry=dst_registry)
    assert dst_registry.manifest_digest("x", "1") == oci_images.single.digest
    assert src_registry.manifest_digest("x", "1") is None


def test_deleting_a_manifest_removes_its_tag_once(
    seeded_src: Seeder, src_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    seeded_src({"r:1": "single", "r:2": "app-a"})
    assert src_registry.delete_manifest("r", "1") is True
    assert src_registry.manifest_digest("r", "1") is None
    assert src_registry.tags("r") == ["2"]
    assert src_registry.delete_manifest("r", "1") is False


# -- auth -------------------------------------------------------------------------------------------


def test_auth_registry_rejects_anonymous_and_accepts_credentials(
    auth_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    assert auth_registry.username and auth_registry.password
    creds = Credentials(auth_registry.username, auth_registry.password)
    assert _status(auth_registry.url + "/v2/") == 401
    assert _status(auth_registry.url + "/v2/", Credentials(creds.username, "wrong")) == 401
    assert _status(auth_registry.url + "/v2/", creds) == 200
    with pytest.raises(LocalRegistryError, match=r"(?i)unauthorized|authentication"):
        auth_registry.push(oci_images.layout, "single", "secure/app", "v1", auth=Credentials("ecr-test", "wrong"))
    assert auth_registry.push(oci_images.layout, "single", "secure/app", "v1") == oci_images.single.digest
    assert auth_registry.manifest_digest("secure/app", "v1") == oci_images.single.digest
    assert _status(auth_registry.url + "/v2/secure/app/tags/list") == 401
    # The password never reaches the config or any argv: only the bcrypt hash is on disk.
    on_disk = b"".join(p.read_bytes() for p in auth_registry.workdir.glob("*") if p.is_file())
    assert auth_registry.password.encode() not in on_disk


# -- access log -------------------------------------------------------------------------------------


def test_access_log_classifies_a_known_request_sequence(
    seeded_src: Seeder, src_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    seeded_src({"repo/a:v1": "app-a"})
    reg, layer = src_registry, oci_images.base_layer.digest
    reg.reset_requests()
    assert reg.requests() == []
    reg.manifest_digest("repo/a", "v1")
    reg.get_manifest("repo/a", "v1")
    reg.blob_exists("repo/a", layer)
    reg.blob_exists("repo/a", "sha256:" + "0" * 64)
    assert _status(f"{reg.url}/v2/repo/a/blobs/{layer}") == 200
    reg.tags("repo/a")
    reg.catalog()
    req = urllib.request.Request(f"{reg.url}/v2/repo/b/blobs/uploads/?mount={layer}&from=repo/a", method="POST")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as resp:
        assert resp.status == 201
    reg.delete_manifest("repo/a", oci_images.app_a.digest)
    _status(reg.url + "/v2/")
    _status(reg.url + "/favicon.ico")
    seen = reg.requests()
    assert [(r.kind, r.status) for r in seen] == [
        (K.MANIFEST_HEAD, 200),
        (K.MANIFEST_GET, 200),
        (K.BLOB_HEAD, 200),
        (K.BLOB_HEAD, 404),
        (K.BLOB_GET, 200),
        (K.TAGS_LIST, 200),
        (K.CATALOG, 200),
        (K.BLOB_MOUNT, 201),
        (K.MANIFEST_DELETE, 202),
        (K.PING, 200),
        (K.OTHER, 404),
    ]
    assert (seen[0].repo, seen[0].reference) == ("repo/a", "v1")
    assert (seen[7].repo, seen[7].reference) == ("repo/b", layer)
    assert seen[0].user_agent.startswith("Python-urllib")


def test_access_log_counts_a_skopeo_push_and_a_cross_repo_mount(
    src_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    reg = src_registry
    reg.reset_requests()
    reg.push(oci_images.layout, "app-a", "one", "v1")
    first = count_kinds(reg.requests())
    # Three blobs (config, base, app layer): one upload session each, then one manifest.
    assert (first[K.UPLOAD_POST], first[K.UPLOAD_PATCH], first[K.UPLOAD_PUT]) == (3, 3, 3)
    assert (first[K.MANIFEST_PUT], first[K.BLOB_MOUNT], first[K.BLOB_GET]) == (1, 0, 0)
    assert all(r.user_agent.startswith("skopeo/") for r in reg.requests())
    reg.reset_requests()
    reg.push(oci_images.layout, "app-b", "two", "v1")
    second = reg.requests()
    # skopeo's blob-info cache knows the base layer is in "one": it mounts instead of uploading.
    mounts = [r for r in second if r.kind is K.BLOB_MOUNT]
    assert [(m.repo, m.reference, m.status) for m in mounts] == [("two", oci_images.base_layer.digest, 201)]
    assert count_kinds(second)[K.UPLOAD_PUT] == 2
    assert reg.blob_exists("two", oci_images.base_layer.digest)


def test_parse_access_log_lines() -> None:
    text = (
        '127.0.0.1 - - [29/Nov/2026:11:54:52 +0000] "HEAD /v2/a/b/c/manifests/sha256:ab HTTP/1.1" 404 96 "" "x"\n'
        "time=... level=info msg=not-an-access-line\n"
        '127.0.0.1 - bob [29/Nov/2026:11:54:52 +0000] "PATCH /v2/r/blobs/uploads/u-1?_state=x HTTP/1.1" 202 - '
        '"http://ref" "agent \\"quoted\\" 1.0"\n'
    )
    head, patch = parse_access_log(text)
    assert (head.kind, head.repo, head.reference, head.status, head.size) == (
        K.MANIFEST_HEAD,
        "a/b/c",
        "sha256:ab",
        404,
        96,
    )
    assert (patch.kind, patch.reference, patch.size, patch.path) == (
        K.UPLOAD_PATCH,
        "u-1",
        0,
        "/v2/r/blobs/uploads/u-1",
    )
    assert patch.user_agent == 'agent \\"quoted\\" 1.0'
    assert classify("GET", "/v2/team/tags/v1/manifests/latest") == (K.MANIFEST_GET, "team/tags/v1", "latest")
    assert classify("POST", "/v2/r/blobs/uploads/?digest=sha256:1") == (K.UPLOAD_POST, "r", None)
    assert classify("PUT", "/v2/r/blobs/uploads/") == (K.UPLOAD_PUT, "r", None)
    assert classify("DELETE", "/v2/r/blobs/sha256:1")[0] is K.OTHER
    assert classify("GET", "/v2/r/tags/list?n=10&last=a") == (K.TAGS_LIST, "r", None)
    assert classify("GET", "/v2/_catalog?n=5")[0] is K.CATALOG
    digest = "sha256:" + "a" * 64
    assert classify("GET", f"/v2/team/app/referrers/{digest}") == (K.REFERRERS, "team/app", digest)
    assert classify("GET", f"/v2/team/referrers/manifests/{digest}") == (K.MANIFEST_GET, "team/referrers", digest)
    assert classify("GET", f"/v2/a/referrers/{digest}?artifactType=application/spdx%2Bjson")[0] is K.REFERRERS
    assert classify("DELETE", f"/v2/a/referrers/{digest}")[0] is K.OTHER


# -- lifecycle --------------------------------------------------------------------------------------


def test_restart_keeps_port_data_and_log(
    seeded_src: Seeder, src_registry: LocalRegistry, oci_images: SampleImages
) -> None:
    seeded_src({"keep/me:v1": "multi"})
    host, storage = src_registry.host, src_registry.storage_dir
    src_registry.stop(keep_storage=True)
    assert not src_registry.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", src_registry.port), timeout=1).close()
    src_registry.start()
    assert (src_registry.host, src_registry.storage_dir) == (host, storage)
    assert src_registry.manifest_digest("keep/me", "v1") == oci_images.multi.digest
    src_registry.restart()
    assert src_registry.manifest_digest("keep/me", "v1") == oci_images.multi.digest
    kinds = count_kinds(src_registry.requests())
    assert kinds[K.MANIFEST_PUT] == 3 and kinds[K.MANIFEST_HEAD] == 2, "log must span the restarts"


def test_stop_removes_the_private_temp_dir(registry_factory: RegistryFactory) -> None:
    registry = registry_factory()
    workdir = registry.workdir
    assert (workdir / "config.yml").is_file() and registry.access_log_path.is_file()
    registry.stop()
    assert not workdir.exists()
    with pytest.raises(LocalRegistryError):
        _ = registry.workdir


def test_root_dir_storage_outlives_the_instance(
    registry_factory: RegistryFactory, oci_images: SampleImages, tmp_path: Path
) -> None:
    first = registry_factory(root_dir=tmp_path / "store")
    first.push(oci_images.layout, "app-a", "persist", "v1")
    first.stop()
    second = registry_factory(root_dir=tmp_path / "store")
    assert second.manifest_digest("persist", "v1") == oci_images.app_a.digest


def test_start_failure_is_reported_with_the_registry_log(src_registry: LocalRegistry) -> None:
    clash = LocalRegistry(port=src_registry.port, startup_timeout=5)
    with pytest.raises(LocalRegistryError, match="address already in use"):
        clash.start()
    assert not clash.running
    with pytest.raises(LocalRegistryError, match="not started"):
        _ = clash.workdir  # a failed first start leaves no temp dir behind


def test_start_returns_once_the_registry_answers(registry_factory: RegistryFactory) -> None:
    # start() waits for readiness instead of sleeping: the first request after it never races the
    # registry's own start-up. How long start-up takes is the bench's business, not a timed test's.
    registries = [registry_factory() for _ in range(5)]
    assert [_status(r.url + "/v2/") for r in registries] == [200] * 5
    assert all(r.startup_seconds is not None for r in registries)


def test_a_registry_used_as_a_context_manager_stops_on_exit(oci_images: SampleImages) -> None:
    with LocalRegistry() as registry:
        url = registry.url
        assert _status(url + "/v2/") == 200
    assert not registry.running
    with pytest.raises(urllib.error.URLError):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + "/v2/", timeout=1)
