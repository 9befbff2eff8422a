"""Trust: what the Python client and skopeo are told to trust (issue 12, items 1-2), offline."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from ecr_transfer.errors import ConfigError
from ecr_transfer.registry.trust import Trust
from ecr_transfer.skopeo import CopyRequest, build_argv, classify
from support.tls import make_ca


def _ca_count(ctx: ssl.SSLContext) -> int:
    return int(ctx.cert_store_stats()["x509_ca"])


def test_ssl_cert_file_is_added_to_the_system_store_not_instead_of_it(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    system = _ca_count(Trust(environ={}).ssl_context("r.example"))
    assert system > 10  # the machine's store is there
    trust = Trust(environ={"SSL_CERT_FILE": str(ca.ca), "HOME": str(tmp_path)})
    assert _ca_count(trust.ssl_context("r.example")) == system + 1
    assert trust.replaces_env  # so skopeo is not handed SSL_CERT_FILE (Go would replace its store too)


def test_cert_dir_combines_certs_d_and_the_setting_for_skopeo(tmp_path: Path) -> None:
    one, two = make_ca(tmp_path / "one"), make_ca(tmp_path / "two")
    certs_d = tmp_path / ".config/containers/certs.d/r.example:5000"
    certs_d.mkdir(parents=True)
    (certs_d / "ca.crt").write_bytes(one.ca.read_bytes())
    alone = Trust(environ={"HOME": str(tmp_path)})
    assert alone.cert_dir("r.example:5000") == certs_d  # nothing to add: the directory as it is
    assert alone.cert_dir("other.example") is None

    both = Trust({"r.example:5000": str(two.ca)}, environ={"HOME": str(tmp_path)})
    made = both.cert_dir("r.example:5000")
    assert made is not None and made != certs_d
    assert sorted(p.name for p in made.iterdir()) == ["ca.crt", "ecr-transfer-0.crt"]
    assert (made / "ecr-transfer-0.crt").read_bytes() == two.ca.read_bytes()
    both.close()
    assert not made.exists()


def test_a_ca_bundle_setting_that_is_not_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_text("hello")
    with pytest.raises(ConfigError) as info:
        Trust({"r.example": str(tmp_path / "x.pem"), "s.example": str(tmp_path / "missing.pem")}, environ={})
    assert str(info.value).splitlines() == [
        f"registryCaBundles: r.example: {tmp_path}/x.pem holds no PEM certificate",
        f"registryCaBundles: s.example: cannot read CA bundle {tmp_path}/missing.pem: No such file or directory",
    ]


def test_skopeo_gets_cert_dirs_except_for_insecure_sides(tmp_path: Path) -> None:
    request = CopyRequest("a/x:1", "b/x:1", src_cert_dir=tmp_path / "s", dest_cert_dir=tmp_path / "d")
    argv = build_argv(request, tmp_path / "digest")
    assert argv[argv.index("--src-cert-dir") + 1] == str(tmp_path / "s")
    assert argv[argv.index("--dest-cert-dir") + 1] == str(tmp_path / "d")
    insecure = CopyRequest("a/x:1", "b/x:1", src_cert_dir=tmp_path / "s", src_insecure=True)
    assert "--src-cert-dir" not in build_argv(insecure, tmp_path / "digest")


def test_skopeo_certificate_errors_are_permanent_and_say_how_to_trust() -> None:
    # skopeo 1.9.3's own words for a registry whose CA it does not know.
    stderr = (
        'time="2026-12-01T21:53:31Z" level=fatal msg="initializing source docker://127.0.0.1:5999/x:1: '
        'pinging container registry 127.0.0.1:5999: Get \\"https://127.0.0.1:5999/v2/\\": '
        'x509: certificate signed by unknown authority"'
    )
    error = classify(stderr, 1)
    assert not error.transient
    assert str(error).endswith(
        "x509: certificate signed by unknown authority; trust its CA: put it in "
        "/etc/containers/certs.d/127.0.0.1:5999/ca.crt (or /etc/docker/certs.d/127.0.0.1:5999/, "
        "~/.config/containers/certs.d/127.0.0.1:5999/), or set registryCaBundles: "
        "{127.0.0.1:5999: /path/to/ca.pem}; insecureRegistries: [127.0.0.1:5999] turns verification off"
    )
