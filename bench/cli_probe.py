"""`ecr-transfer` exactly as its console script runs it, reporting its own peak RSS at exit.

The wrapper adds no import of its own before the CLI's (os and sys are loaded by Python's start-up,
json is loaded at exit), so start-up time stays the CLI's.
"""

from __future__ import annotations

import atexit
import os
import sys


def _report() -> None:
    out = os.environ.get("BENCH_PROBE_OUT")
    if out:
        import json

        # VmHWM, not getrusage: ru_maxrss also counts the RSS the process had before exec, which
        # after fork is the parent's (the harness's), not the CLI's.
        with open("/proc/self/status") as status:
            hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        data = {"maxrss_kb": hwm, "boto3": "boto3" in sys.modules, "modules": len(sys.modules)}
        with open(out, "w") as handle:
            json.dump(data, handle)


atexit.register(_report)

from ecr_transfer.cli import main  # noqa: E402  (after the hook: a crash in import is reported too)

sys.exit(main())
