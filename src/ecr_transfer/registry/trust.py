"""Which certificate authorities a registry connection trusts: one answer for Python and skopeo.

The containers convention decides, as for skopeo, podman and docker: the first existing
`HOST[:PORT]` directory under ~/.config/containers/certs.d, /etc/containers/certs.d or
/etc/docker/certs.d (`*.crt` CAs, `*.cert`/`*.key` client pairs), then the `registryCaBundles`
setting, then SSL_CERT_FILE and REQUESTS_CA_BUNDLE. All of them are ADDED to the system store:
OpenSSL and Go both let SSL_CERT_FILE replace it, so one private CA would otherwise cost every
public registry. skopeo gets the same set through --src-cert-dir/--dest-cert-dir (a cert dir's
`*.crt` are added to Go's system pool) and never sees SSL_CERT_FILE.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from ecr_transfer import envvars
from ecr_transfer.errors import ConfigError
from ecr_transfer.processes import RUN_PREFIX, private_tempdir

log = logging.getLogger(__name__)

USER_CERTS_D = Path(".config/containers/certs.d")
SYSTEM_CERTS_D = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))
ENV_BUNDLES = (envvars.SSL_CERT_FILE, envvars.REQUESTS_CA_BUNDLE)
_PEM_CERT = "-----BEGIN CERTIFICATE-----"
SETTING = "registryCaBundles"


def certs_d_roots(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where per-host cert directories are looked for, in containers/image's order."""
    env = os.environ if environ is None else environ
    home = env.get("HOME")
    user = [Path(home) / USER_CERTS_D] if home else []
    return [*user, *SYSTEM_CERTS_D]


def trust_hint(host: str) -> str:
    """What a user can do about a registry whose certificate is not trusted."""
    return (
        f"trust its CA: put it in /etc/containers/certs.d/{host}/ca.crt (or /etc/docker/certs.d/{host}/, "
        f"~/.config/containers/certs.d/{host}/), or set {SETTING}: {{{host}: /path/to/ca.pem}}; "
        f"insecureRegistries: [{host}] turns verification off"
    )


def _system_bundle() -> Path | None:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and os.path.isfile(candidate):
            return Path(candidate).resolve()
    return None


def _read_bundle(value: str, what: str) -> str:
    """A CA bundle given as a path or as the PEM text itself (handy in an environment variable)."""
    if _PEM_CERT in value:
        return value
    try:
        text = Path(value).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not PEM text"
        raise ConfigError(f"{what}: cannot read CA bundle {value}: {reason}", source=SETTING) from None
    if _PEM_CERT not in text:
        raise ConfigError(f"{what}: {value} holds no PEM certificate", source=SETTING)
    return text


class Trust:
    """CAs and client certificates per registry host, for the registry client (ssl_context) and skopeo (cert_dir)."""

    def __init__(
        self,
        ca_bundles: Mapping[str, str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._roots = certs_d_roots(env)
        self._bundles: dict[str, str] = {}
        problems: list[str] = []
        for host, bundle in (ca_bundles or {}).items():
            try:
                self._bundles[host] = _read_bundle(bundle, host)
            except ConfigError as exc:
                problems += exc.problems  # every bad bundle at once, like every other setting
        if problems:
            raise ConfigError(problems, source=SETTING)
        system = _system_bundle()
        # SSL_CERT_FILE pointing at the system bundle itself (common) adds nothing.
        self._env_files: list[Path] = []
        for name in ENV_BUNDLES:
            value = env.get(name)
            if not value:
                continue
            path = Path(value)
            if not path.is_file():
                log.warning("%s=%s is not a file: ignored", name, value)
            elif path.resolve() != system and path.resolve() not in self._env_files:
                self._env_files.append(path.resolve())
        self._system = system
        self._workdir: str | None = None
        self._contexts: dict[tuple[str, ...], ssl.SSLContext] = {}
        self._dirs: dict[tuple[str, ...], Path | None] = {}
        self._lock = threading.Lock()

    @property
    def replaces_env(self) -> bool:
        """Whether skopeo must not see SSL_CERT_FILE (its CAs travel in the cert dirs instead)."""
        return bool(self._env_files)

    def host_dir(self, *hosts: str) -> Path | None:
        for host in hosts:
            for root in self._roots:
                candidate = root / host
                if candidate.is_dir():
                    return candidate
        return None

    def _extra_pems(self, hosts: Sequence[str]) -> list[str]:
        own = [self._bundles[h] for h in dict.fromkeys(hosts) if h in self._bundles]
        return own + [p.read_text(encoding="utf-8", errors="replace") for p in self._env_files]

    def ssl_context(self, *hosts: str) -> ssl.SSLContext:
        """A verifying context: system store + certs.d + registryCaBundles + SSL_CERT_FILE/REQUESTS_CA_BUNDLE.

        `hosts`: the registry as named in references, then the host actually connected to
        (an endpoint override), since either may carry the CA.
        """
        key = tuple(hosts)
        with self._lock:
            ctx = self._contexts.get(key)
            if ctx is None:
                ctx = self._contexts[key] = self._build_context(hosts)
            return ctx

    def _build_context(self, hosts: Sequence[str]) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if self._system is not None:
            ctx.load_verify_locations(cafile=str(self._system))
        else:
            ctx.load_default_certs()
        capath = ssl.get_default_verify_paths().openssl_capath
        if capath and os.path.isdir(capath):
            ctx.load_verify_locations(capath=capath)
        for pem in self._extra_pems(hosts):
            ctx.load_verify_locations(cadata=pem)
        directory = self.host_dir(*hosts)
        if directory is not None:
            for crt in sorted(directory.glob("*.crt")):
                ctx.load_verify_locations(cafile=str(crt))
            for cert in sorted(directory.glob("*.cert")):
                key = cert.with_suffix(".key")
                if key.exists():  # a client certificate, as containers-certs.d(5) pairs them
                    ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def cert_dir(self, *hosts: str) -> Path | None:
        """The directory skopeo should use for these hosts, or None when the defaults do.

        A certs.d directory alone is passed as it is; with extra CAs a private copy is made in
        the run's work directory, since --*-cert-dir replaces the certs.d lookup.
        """
        key = tuple(hosts)
        with self._lock:
            if key not in self._dirs:
                self._dirs[key] = self._build_dir(hosts)
            return self._dirs[key]

    def _build_dir(self, hosts: Sequence[str]) -> Path | None:
        directory = self.host_dir(*hosts)
        extras = self._extra_pems(hosts)
        if not extras:
            return directory
        if self._workdir is None:
            self._workdir = private_tempdir(RUN_PREFIX)
        target = Path(self._workdir) / "certs" / hosts[0].replace(":", "_").replace("/", "_")
        target.mkdir(parents=True, exist_ok=True)
        if directory is not None:
            for item in directory.iterdir():
                if item.is_file():
                    shutil.copyfile(item, target / item.name)
        for n, pem in enumerate(extras):
            (target / f"ecr-transfer-{n}.crt").write_text(pem, encoding="utf-8")
        return target

    def close(self) -> None:
        with self._lock:
            if self._workdir is not None:
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._dirs.clear()
