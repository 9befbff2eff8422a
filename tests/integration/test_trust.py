"""Private CAs: the Python registry client and skopeo trust the same certificates (issue 12, items 1-2).

Real docker-registry instances serve TLS (`http.tls`) with certificates from CAs made by the
test; nothing on the machine trusts them until the test puts the CA where a user would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.local.oci import SampleImages
from support.tls import TestCA, TlsRegistry, make_ca

from .conftest import SkopeoRecorder, Transfer

TlsFactory = Callable[[TestCA], TlsRegistry]


@pytest.fixture
def tls_registry(oci_images: SampleImages) -> Iterator[TlsFactory]:
    started: list[TlsRegistry] = []

    def start(ca: TestCA) -> TlsRegistry:
        registry = TlsRegistry(ca).start()
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


@pytest.fixture
def pair(tls_registry: TlsFactory, oci_images: SampleImages, tmp_path: Path) -> tuple[TlsRegistry, TlsRegistry, str]:
    """A TLS source holding team/app:1 and an empty TLS destination, each with its own CA."""
    src = tls_registry(make_ca(tmp_path / "src-ca", "source CA"))
    dst = tls_registry(make_ca(tmp_path / "dst-ca", "destination CA"))
    digest = src.push(oci_images.layout, "multi", "team/app", "1")
    return src, dst, digest


def _config(write_config: Callable[..., Path], src: TlsRegistry, dst: TlsRegistry, **extra: Any) -> Path:
    # No insecureRegistries: both sides verify certificates.
    return write_config(
        sourceType="Public",
        srcImageList=f"{src.host}/team/app:1",
        destType="Registry",
        destRegistry=dst.host,
        **extra,
    )


def test_certs_d_directories_are_trusted_by_the_client_and_by_skopeo(
    pair: tuple[TlsRegistry, TlsRegistry, str], transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    src, dst, digest = pair
    home = transfer.tmp_path / "home"
    for registry in (src, dst):
        # The per-user certs.d that skopeo and podman read as well as /etc/containers/certs.d.
        certs = home / ".config/containers/certs.d" / registry.host
        certs.mkdir(parents=True)
        (certs / "ca.crt").write_bytes(registry.ca.ca.read_bytes())
    transfer.monkeypatch.setenv("HOME", str(home))
    cfg = _config(transfer.write_config, src, dst)

    code, first = transfer.run(cfg)
    assert code == 0, first
    assert [i["status"] for i in first["items"]] == ["copied"]
    assert dst.manifest_digest("team/app", "1") == digest
    # The second run sees the destination through the client: the same trust, nothing copied.
    code, second = transfer.run(cfg)
    assert code == 0 and [i["status"] for i in second["items"]] == ["skipped"]
    assert len(skopeo_recorder.copies()) == 1


def test_registry_ca_bundles_reach_skopeo_as_cert_dirs(
    pair: tuple[TlsRegistry, TlsRegistry, str], transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    src, dst, digest = pair
    # A path for one side, the PEM text itself for the other (as an environment variable carries it).
    bundles = {src.host: str(src.ca.ca), dst.host: dst.ca.ca.read_text()}
    cfg = _config(transfer.write_config, src, dst, registryCaBundles=bundles)

    code, result = transfer.run(cfg)

    assert code == 0, result
    assert dst.manifest_digest("team/app", "1") == digest
    argv = skopeo_recorder.copies()[-1]
    assert "--src-cert-dir" in argv and "--dest-cert-dir" in argv
    # The private cert dirs live in the run's directory, removed when the run ends.
    assert not Path(argv[argv.index("--src-cert-dir") + 1]).exists()


def test_ssl_cert_file_and_requests_ca_bundle_are_added_to_the_system_store(
    pair: tuple[TlsRegistry, TlsRegistry, str], transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    src, dst, digest = pair
    # Each variable alone would replace the store (OpenSSL, Go) or be ignored (urllib3, Go):
    # only when both are added does each side trust both CAs.
    transfer.monkeypatch.setenv("SSL_CERT_FILE", str(src.ca.ca))
    transfer.monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(dst.ca.ca))
    cfg = _config(transfer.write_config, src, dst)

    code, result = transfer.run(cfg)

    assert code == 0, result
    assert dst.manifest_digest("team/app", "1") == digest


def test_an_untrusted_certificate_fails_once_and_says_how_to_trust_it(
    tls_registry: TlsFactory, transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    src = tls_registry(make_ca(transfer.tmp_path / "ca"))
    for tag in ("1", "2"):
        src.push(transfer.images.layout, "single", "team/app", tag)
    src.reset_requests()
    cfg = transfer.write_config(
        sourceType="Public",
        srcImageList=f"{src.host}/team/app:1\n{src.host}/team/app:2",
        destType="Registry",
        destRegistry=transfer.dst.host,
        insecureRegistries=[transfer.dst.host],
    )

    code, result = transfer.run(cfg)

    assert code == 1
    for item in result["items"]:
        assert item["status"] == "failed"
        assert (
            f"the TLS certificate of {src.host} is not trusted (unable to get local issuer certificate)"
            in (item["error"])
        )
        assert f"/etc/containers/certs.d/{src.host}/ca.crt" in item["error"]
        assert "gave up" not in item["error"]  # permanent: no retries
    assert skopeo_recorder.copies() == []  # nothing was pushed and then reported failed
    assert src.requests() == []  # no request ever got past the handshake
