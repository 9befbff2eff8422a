"""Real CNCF distribution registries (`docker-registry serve`) on loopback, for tests and the benchmark.

Each instance owns a private temp dir (config, htpasswd, logs, storage) and starts in ~40 ms, so
tests get fresh registries instead of sharing state. The access log (Combined Log Format on the
registry's stdout) goes to a file and is parsed, so a test or the benchmark can count exactly
which requests a transfer made. The HTTP helpers check results; the product has its own client.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml

from ecr_transfer.local.accesslog import AccessLog, RegistryRequest
from ecr_transfer.local.oci import OCI_INDEX, OCI_MANIFEST, tagged_digest
from ecr_transfer.processes import stop_process

REGISTRY_BIN = "docker-registry"
SKOPEO_BIN = "skopeo"
MANIFEST_ACCEPT = (
    f"{OCI_INDEX}, {OCI_MANIFEST}, application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json"
)
# Loopback only: an HTTP(S)_PROXY in the environment must not capture requests to 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LocalRegistryError(RuntimeError):
    """The registry did not start, or a helper (skopeo push) failed."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def write_authfile(path: str | os.PathLike[str], auths: dict[str, Credentials]) -> Path:
    """A containers-auth.json for skopeo, mode 0600 from the first byte (never `--creds` on argv)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"auths": {host: {"auth": creds.basic()} for host, creds in auths.items()}}, out)
    return Path(path)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    """Names lower-cased."""
    body: bytes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRegistry:
    """One `docker-registry serve` process on 127.0.0.1, with optional htpasswd basic auth."""

    def __init__(
        self,
        *,
        auth: Credentials | tuple[str, str] | None = None,
        root_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.credentials = Credentials(*auth) if isinstance(auth, tuple) else auth
        self._root_dir = Path(root_dir) if root_dir is not None else None
        self._fixed_port = port
        self._port = port or 0
        self.startup_timeout = startup_timeout
        self.startup_seconds: float | None = None
        """Wall time of the last start() until /v2/ answered."""
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: AccessLog | None = None
        # Fixed per instance, so upload sessions signed before restart() stay valid after it.
        self._secret = secrets.token_hex(16)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"LocalRegistry({self.host}, {state}, auth={self.credentials is not None})"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        return self._port

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the registry part of an image reference."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    opener: urllib.request.OpenerDirector = _OPENER
    """How the helpers reach the registry (a TLS registry for tests trusts its own CA here)."""

    @property
    def username(self) -> str | None:
        return self.credentials.username if self.credentials else None

    @property
    def password(self) -> str | None:
        return self.credentials.password if self.credentials else None

    @property
    def workdir(self) -> Path:
        """Private temp dir: config.yml, htpasswd, access.log, registry.log, storage/."""
        if self._workdir is None:
            raise LocalRegistryError("registry not started")
        return self._workdir

    @property
    def storage_dir(self) -> Path:
        return self._root_dir if self._root_dir is not None else self.workdir / "storage"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / "access.log"

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start (or bring back after `stop(keep_storage=True)`) and wait until /v2/ answers."""
        if self.running:
            return self
        fresh = self._workdir is None
        if fresh:
            self._workdir = Path(tempfile.mkdtemp(prefix="ecr-transfer-registry-"))
            self._log = AccessLog(self.access_log_path, lambda path: self._request("GET", path))
            self.storage_dir.mkdir(parents=True, exist_ok=True)
            if self.credentials is not None:
                # Password on stdin, not argv; bcrypt cost 4 because the registry checks every request.
                out = subprocess.run(
                    ["htpasswd", "-B", "-C", "4", "-i", "-n", self.credentials.username],
                    input=self.credentials.password.encode(), capture_output=True, check=True,
                )  # fmt: skip
                (self._workdir / "htpasswd").write_bytes(out.stdout.strip() + b"\n")
        # A port from _free_port() can be taken (by another xdist worker) before the registry
        # binds it: pick another. A restart keeps its port, since clients already know it.
        attempts = 1 if self._port else 5
        for attempt in range(attempts):
            if not self._port or attempt:
                self._port = _free_port()
            try:
                self._spawn()
                return self
            except LocalRegistryError as err:
                if "address already in use" not in str(err) or attempt == attempts - 1:
                    if fresh:  # nothing worth keeping; a failed restart keeps its storage
                        self.stop()
                    raise
        raise AssertionError("unreachable")

    def stop(self, *, keep_storage: bool = False) -> None:
        """Terminate the process. Without keep_storage, also delete config, logs and temp storage."""
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is not None:
            stop_process(proc)
        if not keep_storage and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._port = self._fixed_port or 0

    def restart(self) -> Self:
        """Stop and start on the same port and storage: "the registry went away and came back"."""
        self.stop(keep_storage=True)
        return self.start()

    def _config(self) -> dict[str, object]:
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": self._secret},
        }
        if self.credentials is not None:
            htpasswd = {"realm": "ecr-transfer-test", "path": str(self.workdir / "htpasswd")}
            config["auth"] = {"htpasswd": htpasswd}
        return config

    def _spawn(self) -> None:
        config_path = self.workdir / "config.yml"
        config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))
        error_log = self.workdir / "registry.log"
        log_start = error_log.stat().st_size if error_log.exists() else 0
        started = time.monotonic()
        # Append: offsets into access.log stay valid across restart().
        with open(self.access_log_path, "ab") as out, open(error_log, "ab") as err:
            proc = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config_path)], stdin=subprocess.DEVNULL, stdout=out, stderr=err
            )
        self._proc = proc
        _RUNNING.add(self)
        listening = f'msg="listening on {self.host}'.encode()  # `, tls` follows with http.tls
        while proc.poll() is None:
            # Whoever else holds the port would answer /v2/ too: first our process must say it
            # listens (logged right after a successful bind), then /v2/ must answer (401 with auth).
            with contextlib.suppress(OSError):
                if listening in error_log.read_bytes()[log_start:] and self._request(
                    "GET", "/v2/", timeout=0.5, authenticate=False
                ).status in (200, 401):
                    self.startup_seconds = time.monotonic() - started
                    return
            if time.monotonic() - started > self.startup_timeout:
                self.stop(keep_storage=True)
                raise LocalRegistryError(
                    f"docker-registry on {self.host} did not answer /v2/ within "
                    f"{self.startup_timeout:.1f}s:\n{self.stderr_tail()}"
                )
            time.sleep(0.005)
        self.stop(keep_storage=True)
        raise LocalRegistryError(f"docker-registry exited with {proc.returncode} on {self.host}:\n{self.stderr_tail()}")

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "registry.log").read_text(errors="replace")
        except (OSError, LocalRegistryError):
            return "(no registry log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- access log ------------------------------------------------------------------------------

    def requests(self, *, sync: bool = True) -> list[RegistryRequest]:
        """Requests logged since start or the last reset_requests(), oldest first (see AccessLog)."""
        return self._access_log().requests(sync=sync and self.running)

    def reset_requests(self) -> None:
        """Forget what was logged so far: the next requests() covers one phase only."""
        self._access_log().reset(sync=self.running)

    def _access_log(self) -> AccessLog:
        if self._log is None:
            raise LocalRegistryError(f"{self!r} was never started")
        return self._log

    # -- HTTP helpers ----------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, accept: str | None = None, timeout: float = 10.0,
        authenticate: bool = True,
    ) -> Response:  # fmt: skip
        req = urllib.request.Request(self.url + path, method=method)
        if accept:
            req.add_header("Accept", accept)
        if authenticate and self.credentials is not None:
            req.add_header("Authorization", "Basic " + self.credentials.basic())
        try:
            with self.opener.open(req, timeout=timeout) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return Response(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())

    def _expect(self, method: str, path: str, ok: int, accept: str | None = None) -> Response | None:
        """The response if `ok`, None on 404 (absent), LocalRegistryError otherwise."""
        resp = self._request(method, path, accept=accept)
        if resp.status == 404:
            return None
        if resp.status != ok:
            raise LocalRegistryError(f"{method} {path} -> {resp.status}: {resp.body[:300]!r}")
        return resp

    def manifest_digest(self, repo: str, ref: str) -> str | None:
        """Docker-Content-Digest of repo:ref (tag or digest) by HEAD, None if absent."""
        resp = self._expect("HEAD", f"/v2/{repo}/manifests/{ref}", 200, MANIFEST_ACCEPT)
        return resp.headers.get("docker-content-digest") if resp else None

    def get_manifest(self, repo: str, ref: str) -> bytes | None:
        """The manifest or index bytes as stored, None if absent."""
        resp = self._expect("GET", f"/v2/{repo}/manifests/{ref}", 200, MANIFEST_ACCEPT)
        return resp.body if resp else None

    def blob_exists(self, repo: str, digest: str) -> bool:
        return self._expect("HEAD", f"/v2/{repo}/blobs/{digest}", 200) is not None

    def tags(self, repo: str) -> list[str]:
        """Tags of repo as the registry lists them; [] for an unknown repository."""
        resp = self._expect("GET", f"/v2/{repo}/tags/list", 200)
        return list(json.loads(resp.body).get("tags") or []) if resp else []

    def catalog(self) -> list[str]:
        # 1000 is distribution's default catalog.maxentries; more is rejected with 400.
        resp = self._expect("GET", "/v2/_catalog?n=1000", 200)
        return list(json.loads(resp.body).get("repositories") or []) if resp else []

    def delete_manifest(self, repo: str, ref: str) -> bool:
        """Delete by tag or digest; False if absent. Distribution 2.8 deletes by digest only, which
        removes every tag pointing at that digest."""
        digest = ref if ref.startswith("sha256:") else self.manifest_digest(repo, ref)
        return digest is not None and self._expect("DELETE", f"/v2/{repo}/manifests/{digest}", 202) is not None

    # -- skopeo ----------------------------------------------------------------------------------

    def push(
        self,
        layout_dir: str | os.PathLike[str],
        tag: str,
        repo: str,
        repo_tag: str | None = None,
        *,
        all_platforms: bool = True,
        auth: Credentials | None = None,
    ) -> str:
        """skopeo-copy `oci:layout_dir:tag` to repo:repo_tag, or by digest (untagged) if repo_tag is None.

        Credentials default to this registry's own. Returns the digest skopeo pushed.
        """
        creds = auth or self.credentials
        if repo_tag is None:
            dest = f"{self.host}/{repo}@{tagged_digest(layout_dir, tag)}"
        else:
            dest = f"{self.host}/{repo}:{repo_tag}"
        workdir = Path(tempfile.mkdtemp(prefix="push-", dir=self.workdir))
        try:
            # Always an authfile, even `{}`: never the user's ~/.docker/config.json.
            authfile = write_authfile(workdir / "auth.json", {self.host: creds} if creds else {})
            cmd = [SKOPEO_BIN, "copy", "--authfile", str(authfile), "--dest-tls-verify=false"]
            cmd += ["--all"] if all_platforms else []
            cmd += ["--digestfile", str(workdir / "digest"), f"oci:{layout_dir}:{tag}", f"docker://{dest}"]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if result.returncode != 0:
                raise LocalRegistryError(f"skopeo push to {dest} failed: {result.stderr.strip()}")
            return (workdir / "digest").read_text().strip()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


_RUNNING: set[LocalRegistry] = set()


@atexit.register
def _stop_leftovers() -> None:
    # A crashed or interrupted session must not leave registries holding ports and temp dirs.
    for registry in list(_RUNNING):
        registry.stop()
