"""A private Docker engine for the tests: started on demand, found again by later runs.

The tests never touch a Docker engine the user runs: stand-in base images are tagged with the
real names (`python:3.12...`, `public.ecr.aws/lambda/python:3.12`), which would shadow the real
ones there. So the engine has its own socket, data root and exec root, as FIELD-NOTES describes
("Docker on these machines"); its data root persists, so stand-ins and layers are built once per
machine. `scripts/docker-engine.sh` drives the same engine by hand.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RUN_DIR = Path(os.environ.get("ECR_TRANSFER_DOCKER_RUN", "/run/ecr-transfer-docker"))
DATA_ROOT = Path(os.environ.get("ECR_TRANSFER_DOCKER_DATA", "/var/lib/ecr-transfer-docker"))
SOCKET = RUN_DIR / "docker.sock"
PIDFILE = RUN_DIR / "dockerd.pid"
LOG = RUN_DIR / "dockerd.log"
DOCKER_HOST = f"unix://{SOCKET}"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Engine:
    host: str
    started_here: bool

    def env(self) -> dict[str, str]:
        """The environment for docker and sam: this engine, and no BuildKit (SAM's builder is
        the classic one; BuildKit would need its own frontend image, which cannot be pulled)."""
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.host
        env["DOCKER_BUILDKIT"] = "0"
        env["SAM_CLI_TELEMETRY"] = "0"
        return env


def unavailable_reason() -> str | None:
    """Why no engine can run here, or None."""
    for tool, package in (("dockerd", "docker.io"), ("docker", "docker.io"), ("debootstrap", "debootstrap")):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install {package}; ./scripts/bootstrap.sh installs it)"
    if os.geteuid() != 0:
        return "needs root to start a Docker engine"
    return None


def _answers(env: dict[str, str]) -> bool:
    probe = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return probe.returncode == 0


def ensure() -> Engine:
    """The private engine, started if it is not running. Safe from several processes at once."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKER_HOST": DOCKER_HOST}
    with open(RUN_DIR / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if SOCKET.exists() and _answers(env):
            return Engine(DOCKER_HOST, started_here=False)
        DATA_ROOT.mkdir(parents=True, exist_ok=True)
        with open(LOG, "ab") as log:
            argv = ["dockerd", "--data-root", str(DATA_ROOT), "--exec-root", str(RUN_DIR / "exec")]
            subprocess.Popen(
                [*argv, "--pidfile", str(PIDFILE), "-H", DOCKER_HOST],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own session: Ctrl-C on pytest must not take the engine down mid-build.
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if SOCKET.exists() and _answers(env):
                return Engine(DOCKER_HOST, started_here=True)
            time.sleep(0.5)
        tail = LOG.read_text(errors="replace")[-2000:] if LOG.exists() else ""
        raise RuntimeError(f"dockerd did not answer on {SOCKET} within {START_TIMEOUT:.0f}s:\n{tail}")


def stop() -> None:
    """Stop the private engine by its pid (what `scripts/docker-engine.sh stop` does)."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)


def docker(engine: Engine, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], env=engine.env(), capture_output=True, text=True, timeout=timeout, check=check
    )


def bridge_gateway() -> str:
    """The host's address on the default bridge: where a bridged container reaches this machine.
    (dockerd 20.10 leaves IPAM's Gateway empty on the default bridge: read docker0 itself.)"""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "docker0"], capture_output=True, text=True, check=True)
    match = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", out.stdout)
    if match is None:
        raise RuntimeError(f"docker0 has no IPv4 address: {out.stdout!r}")
    return match.group(1)
