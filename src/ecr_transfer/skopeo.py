"""Running `skopeo copy` and turning its stderr into transient, permanent or conflict errors."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ecr_transfer import envvars
from ecr_transfer.errors import ConflictError, PermanentError, StoppedError, TransferError, TransientError
from ecr_transfer.processes import COPY_PREFIX, private_tempdir
from ecr_transfer.registry.trust import trust_hint

# Order matters: the first matching rule decides. Conflict before unauthorized ("denied"),
# and permanent "not found" before the generic transient fallbacks.
_RULES: list[tuple[re.Pattern[str], type[TransferError]]] = [
    (re.compile(r"tag is immutable|ImageTagAlreadyExists|cannot be overwritten", re.I), ConflictError),
    (re.compile(r"toomanyrequests|too many requests|\b429\b", re.I), TransientError),
    (re.compile(r"unauthorized|authentication required|access denied|denied:|\b401\b|\b403\b", re.I), PermanentError),
    (re.compile(r"manifest unknown|name unknown|not found|does not exist|\b404\b", re.I), PermanentError),
    (
        re.compile(r"invalid reference|invalid (tag|repository)|parsing reference|repository name must", re.I),
        PermanentError,
    ),
    (re.compile(r"digest.*(mismatch|did not match)|unexpected digest", re.I), TransientError),
]
_ERROR_LINE = re.compile(r'level=(?:fatal|error) msg="(.*)"\s*$')
_CERTIFICATE = re.compile(r"x509: |tls: failed to verify certificate|certificate signed by unknown authority", re.I)
_HOST_IN_URL = re.compile(r"https://([^/\"\s]+)/")


def classify(stderr: str, returncode: int) -> TransferError:
    """Map skopeo's failure output to our error kinds; unknown failures are transient (retried)."""
    message = summarize(stderr) or f"skopeo exited with status {returncode}"
    if _CERTIFICATE.search(stderr):
        # Would repeat identically on every attempt and every run: say how to trust the CA.
        host = _HOST_IN_URL.search(stderr)
        return PermanentError(f"{message}; {trust_hint(host.group(1) if host else 'HOST:PORT')}")
    for pattern, kind in _RULES:
        if pattern.search(stderr):
            return kind(message)
    return TransientError(message)


def summarize(stderr: str) -> str:
    """The full cause, without logrus decoration: users need the real message, not an error name."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    causes = []
    for line in lines:
        match = _ERROR_LINE.search(line)
        causes.append(match.group(1).replace('\\"', '"') if match else line)
    return " | ".join(causes[-5:])


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessOptions:
    """How a skopeo process reaches both sides, for a copy (CopyRequest) or a sync (SyncRequest)."""

    src_insecure: bool = False
    dest_insecure: bool = False
    src_cert_dir: Path | None = None
    dest_cert_dir: Path | None = None
    """CAs (and client certificates) per side, as registry/trust.py computed them for Python too."""
    authfile: Path | None = None
    registries_conf: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    drop_env: tuple[str, ...] = ()
    """Variables skopeo must not see (SSL_CERT_FILE would replace Go's system store: its CAs are in the cert dirs)."""


@dataclass(frozen=True, slots=True)
class CopyRequest(ProcessOptions):
    source: str
    target: str
    all_platforms: bool = True
    index_only: bool = False
    """Copy only the index (`--multi-arch index-only`): its platforms are at the destination already."""


STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
"""Signals that stop a run (Ctrl-C, kill, docker/ECS stop); skopeo dying of one is the stop."""


def skopeo_binary() -> str:
    return os.environ.get(envvars.SKOPEO, "skopeo")


def global_argv(options: ProcessOptions) -> list[str]:
    """skopeo and its global flags, before the command."""
    argv = [skopeo_binary()]
    if not Path("/etc/containers/policy.json").exists():
        # Without a host policy skopeo refuses to run; a syncer does not verify signatures.
        argv.append("--insecure-policy")
    if options.registries_conf is not None:
        # skopeo 1.9.3 ignores CONTAINERS_REGISTRIES_CONF; only this (hidden) global flag works.
        argv += ["--registries-conf", str(options.registries_conf)]
    return argv


def build_argv(request: CopyRequest, digestfile: Path) -> list[str]:
    argv = global_argv(request)
    argv += ["copy", "--retry-times", "0", "--digestfile", str(digestfile)]
    if request.index_only:
        argv += ["--multi-arch", "index-only"]
    elif request.all_platforms:
        argv.append("--all")
    if request.authfile is not None:
        argv += ["--authfile", str(request.authfile)]
    if request.src_insecure:
        argv.append("--src-tls-verify=false")
    if request.dest_insecure:
        argv.append("--dest-tls-verify=false")
    if request.src_cert_dir is not None and not request.src_insecure:
        argv += ["--src-cert-dir", str(request.src_cert_dir)]
    if request.dest_cert_dir is not None and not request.dest_insecure:
        argv += ["--dest-cert-dir", str(request.dest_cert_dir)]
    argv += [f"docker://{request.source}", f"docker://{request.target}"]
    return argv


DEFAULT_COPY_TIMEOUT = 3600.0
_PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """Linux: skopeo gets SIGKILL when the thread that started it dies.

    Without it a CLI killed with SIGKILL (OOM killer, `kill -9`) leaves its skopeo processes
    pushing on their own while the next run, which sees a dead lease, copies the same images.
    """
    prctl = _PRCTL
    if prctl is None:
        return None

    def preexec() -> None:
        # Only a foreign call and getppid here: no lock another thread could hold at fork time.
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(137)

    return preexec


def copy_timeout() -> float:
    return float(os.environ.get(envvars.COPY_TIMEOUT) or DEFAULT_COPY_TIMEOUT)


_deadline: float | None = None
"""time.monotonic() by which every skopeo of this process must have ended (see `deadline`)."""


@contextlib.contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Every copy started inside ends by `at` (time.monotonic()): killed then, a transient failure.

    Process-wide on purpose: a Lambda invocation (the fast path) has one hard end for all the
    copies its threads run, and Lambda runs one invocation per process at a time.
    """
    global _deadline
    saved, _deadline = _deadline, at
    try:
        yield
    finally:
        _deadline = saved


def time_left(timeout: float) -> float:
    """`timeout`, or less when the deadline comes sooner; TransientError when it has (nearly) come."""
    if _deadline is None:
        return timeout
    left = _deadline - time.monotonic()
    if left <= 1:
        raise TransientError("no time left for another copy in this invocation")
    return min(timeout, left)


def run(argv: list[str], options: ProcessOptions, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Start skopeo and wait for it (stderr kept, stdout dropped); a process that cannot run, or is
    killed at `timeout`, is a classified TransferError."""
    env = dict(os.environ)
    env.update(options.extra_env)
    for name in options.drop_env:
        env.pop(name, None)
    if options.registries_conf is not None:
        env[envvars.CONTAINERS_REGISTRIES_CONF] = str(options.registries_conf)
    try:
        proc = subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # "Copying blob ..." progress: nothing we read
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=die_with_parent(os.getpid()),
        )
    except subprocess.TimeoutExpired:
        raise TransientError(f"skopeo {what} timed out after {timeout:.0f}s") from None
    except FileNotFoundError:
        raise PermanentError(f"skopeo not found ({skopeo_binary()}); install it (apt-get install skopeo)") from None
    except OSError as exc:  # not executable, exec format error...
        raise PermanentError(f"cannot run skopeo ({skopeo_binary()}): {exc.strerror or exc}") from None
    if -proc.returncode in STOP_SIGNALS:
        # We never send these to skopeo ourselves (a timeout kills): the run is being stopped.
        name = signal.Signals(-proc.returncode).name
        raise StoppedError(f"skopeo {what} was ended by {name}: the run is stopping")
    return proc


def copy(request: CopyRequest, timeout: float | None = None) -> str:
    """Run one copy attempt; return the digest skopeo wrote. Raises a classified TransferError.

    skopeo's own retries are off (`--retry-times 0`): our retry loop classifies each failure and
    backs off, so a permanent error is not retried three times inside skopeo as well. skopeo has
    no read timeout of its own, so a stalled connection hangs it: after `timeout` seconds
    (ECR_TRANSFER_COPY_TIMEOUT, default an hour) it is killed and the attempt is transient.
    """
    timeout = time_left(timeout or copy_timeout())
    # Named with our pid: a run killed mid-copy leaves it, and the next run removes it.
    work = private_tempdir(COPY_PREFIX)
    try:
        digestfile = Path(work) / "digest"
        proc = run(build_argv(request, digestfile), request, timeout, "copy")
        if proc.returncode != 0:
            raise classify(proc.stderr, proc.returncode)
        try:
            return digestfile.read_text(encoding="utf-8").strip()
        except OSError:
            raise TransientError("skopeo reported success but wrote no digest") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def registries_conf_text(endpoints: Mapping[str, str], insecure: Sequence[str]) -> str:
    """A registries.conf that sends a registry host to another address (VPC endpoint, proxy, test)."""
    blocks = []
    for host, location in sorted(endpoints.items()):
        location = location.split("://", 1)[-1].rstrip("/")
        flag = "true" if host in insecure or location in insecure else "false"
        blocks.append(f'[[registry]]\nprefix = "{host}"\nlocation = "{location}"\ninsecure = {flag}\n')
    return "\n".join(blocks)
