"""Private CAs and TLS registries for the trust tests: certificates made here with `cryptography`.

A TlsRegistry is a real docker-registry serving `http.tls` with a server certificate for
127.0.0.1 signed by a CA of the test's own, which nothing on the machine trusts until a test
puts it somewhere (certs.d, registryCaBundles, SSL_CERT_FILE...).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ecr_transfer.local.registry import LocalRegistry


@dataclass(frozen=True, slots=True)
class TestCA:
    """A CA (ca.crt) and one server certificate it signed for 127.0.0.1 (server.crt, server.key)."""

    __test__ = False  # not a pytest test class
    ca: Path
    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "ecr-transfer test CA") -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = {k: False for k in ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")}
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TestCA(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


class TlsRegistry(LocalRegistry):
    """A LocalRegistry speaking HTTPS with a certificate from `ca`."""

    def __init__(self, ca: TestCA, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.ca = ca
        context = ssl.create_default_context(cafile=str(ca.ca))
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def _config(self) -> dict[str, object]:
        config = super()._config()
        http = dict(config["http"])  # type: ignore[call-overload]
        http["tls"] = {"certificate": str(self.ca.cert), "key": str(self.ca.key)}
        config["http"] = http
        return config
