"""Whether a process still runs: how a ledger lease or a leftover authfile is known to be stale."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True when `pid` exists on this host (even if owned by another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
