"""Processes and the temporary directories they own: how a lease or a leftover is known to be stale."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

AUTH_PREFIX = "ecr-transfer-auth-"
"""skopeo's private authfile (credentials inside)."""
COPY_PREFIX = "ecr-transfer-copy-"
"""One skopeo copy's digest file."""
RUN_PREFIX = "ecr-transfer-run-"
"""One run's registries.conf and cert dirs."""
_PREFIXES = (AUTH_PREFIX, COPY_PREFIX, RUN_PREFIX)


def pid_alive(pid: int) -> bool:
    """True when `pid` exists on this host (even if owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_tempdir(prefix: str) -> str:
    """A 0700 temporary directory whose name carries this pid, so a later run can tell it is stale."""
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def remove_stale_tempdirs() -> list[Path]:
    """Delete our temporary directories left by processes that died without cleaning up (SIGKILL).

    Only this user's directories of dead processes go. Returns what was removed.
    """
    removed = []
    for prefix in _PREFIXES:
        for directory in Path(tempfile.gettempdir()).glob(f"{prefix}*-*"):
            pid = directory.name.removeprefix(prefix).split("-", 1)[0]
            try:
                mine = directory.stat().st_uid == os.getuid()
            except OSError:
                continue
            if pid.isdigit() and mine and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(directory, ignore_errors=True)
                removed.append(directory)
    return removed


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after `timeout` seconds; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
