"""Running `skopeo copy` and turning its stderr into transient, permanent or conflict errors."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ecr_transfer import envvars
from ecr_transfer.errors import ConflictError, PermanentError, TransferError, TransientError

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


def classify(stderr: str, returncode: int) -> TransferError:
    """Map skopeo's failure output to our error kinds; unknown failures are transient (retried)."""
    message = summarize(stderr) or f"skopeo exited with status {returncode}"
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


@dataclass(frozen=True, slots=True)
class CopyRequest:
    source: str
    target: str
    all_platforms: bool = True
    src_insecure: bool = False
    dest_insecure: bool = False
    authfile: Path | None = None
    registries_conf: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


def skopeo_binary() -> str:
    return os.environ.get(envvars.SKOPEO, "skopeo")


def build_argv(request: CopyRequest, digestfile: Path) -> list[str]:
    argv = [skopeo_binary()]
    if not Path("/etc/containers/policy.json").exists():
        # Without a host policy skopeo refuses to run; a syncer does not verify signatures.
        argv.append("--insecure-policy")
    if request.registries_conf is not None:
        # skopeo 1.9.3 ignores CONTAINERS_REGISTRIES_CONF; only this (hidden) global flag works.
        argv += ["--registries-conf", str(request.registries_conf)]
    argv += ["copy", "--retry-times", "0", "--digestfile", str(digestfile)]
    if request.all_platforms:
        argv.append("--all")
    if request.authfile is not None:
        argv += ["--authfile", str(request.authfile)]
    if request.src_insecure:
        argv.append("--src-tls-verify=false")
    if request.dest_insecure:
        argv.append("--dest-tls-verify=false")
    argv += [f"docker://{request.source}", f"docker://{request.target}"]
    return argv


def copy(request: CopyRequest, timeout: float = 3600.0) -> str:
    """Run one copy attempt; return the digest skopeo wrote. Raises a classified TransferError.

    skopeo's own retries are off (`--retry-times 0`): our retry loop classifies each failure and
    backs off, so a permanent error is not retried three times inside skopeo as well.
    """
    with tempfile.TemporaryDirectory(prefix="ecr-transfer-copy-") as work:
        digestfile = Path(work) / "digest"
        env = dict(os.environ)
        env.update(request.extra_env)
        if request.registries_conf is not None:
            env["CONTAINERS_REGISTRIES_CONF"] = str(request.registries_conf)
        try:
            proc = subprocess.run(
                build_argv(request, digestfile),
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TransientError(f"skopeo copy timed out after {timeout:.0f}s") from None
        except FileNotFoundError:
            raise PermanentError(f"skopeo not found ({skopeo_binary()}); install it (apt-get install skopeo)") from None
        if proc.returncode != 0:
            raise classify(proc.stderr, proc.returncode)
        try:
            return digestfile.read_text(encoding="utf-8").strip()
        except OSError:
            raise TransientError("skopeo reported success but wrote no digest") from None


def registries_conf_text(endpoints: Mapping[str, str], insecure: Sequence[str]) -> str:
    """A registries.conf that sends a registry host to another address (VPC endpoint, proxy, test)."""
    blocks = []
    for host, location in sorted(endpoints.items()):
        location = location.split("://", 1)[-1].rstrip("/")
        flag = "true" if host in insecure or location in insecure else "false"
        blocks.append(f'[[registry]]\nprefix = "{host}"\nlocation = "{location}"\ninsecure = {flag}\n')
    return "\n".join(blocks)
