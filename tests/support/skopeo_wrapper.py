"""A skopeo stand-in for fault, crash and secret tests: records, probes, slows down, then execs skopeo.

Installed through ECR_TRANSFER_SKOPEO. For every call it appends one JSON line with argv, pid
and, when `--authfile` is given, what the authfile looks like *while skopeo runs* (mode of the
file and of its directory, the hosts it names: never the secrets). Knobs, from the environment
of the process under test:

- FAULT_SKOPEO_DELAY: seconds to sleep before skopeo starts (so a SIGKILL lands mid-copy);
- FAULT_SKOPEO_FAIL: if set, exit 1 with that text on stderr instead of copying.

The interpreter is this venv's python with -SE: a pyenv shim would add ~0.3 s per call.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path

import pytest

_SCRIPT = r"""
import json, os, stat, sys, time
args = sys.argv[1:]
record = {"argv": args, "pid": os.getpid(), "ppid": os.getppid(), "at": time.time()}
# Where containers/image would keep the blob-info cache (skopeo_sync.memory_cache_env).
record["cache_env"] = [os.environ.get("_CONTAINERS_ROOTLESS_UID"), os.environ.get("XDG_DATA_HOME")]
if "--authfile" in args:
    path = args[args.index("--authfile") + 1]
    try:
        st = os.stat(path)
        with open(path) as f:
            hosts = sorted(json.load(f).get("auths", {}))
        record["authfile"] = {
            "path": path, "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
            "dir_mode": stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), "hosts": hosts,
        }
    except OSError as exc:
        record["authfile"] = {"path": path, "error": str(exc)}
if "sync" in args:
    # The images of a `skopeo sync --src yaml` are in its YAML (JSON here), which is gone afterwards.
    try:
        with open(args[-2]) as f:
            doc = json.load(f)
        record["synced"] = [
            f"{args[-1]}/{repo.rsplit('/', 1)[-1]}:{tag}"
            for registry in doc.values() for repo, tags in registry.get("images", {}).items() for tag in tags
        ]
    except (OSError, ValueError, AttributeError) as exc:
        record["synced"] = {"error": str(exc)}
with open(LOG, "a") as f:
    f.write(json.dumps(record) + "\n")
delay = float(os.environ.get("FAULT_SKOPEO_DELAY") or 0)
if delay:
    time.sleep(delay)
fail = os.environ.get("FAULT_SKOPEO_FAIL")
if fail:
    sys.stderr.write(fail + "\n")
    sys.exit(1)
os.execv(REAL, [REAL] + args)
"""


class Skopeo:
    """What the wrapper saw. `calls()` are argv lists, like the integration recorder's."""

    def __init__(self, log: Path, wrapper: Path) -> None:
        self.log = log
        self.wrapper = wrapper

    def records(self) -> list[dict[str, object]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def calls(self) -> list[list[str]]:
        return [list(r["argv"]) for r in self.records()]  # type: ignore[call-overload]

    def copies(self) -> list[list[str]]:
        """One per image: the copy that writes the tag (`--all`, or the index after its platforms)."""
        return [c for c in self.calls() if "copy" in c and "@" not in c[-1]]

    def copied_targets(self) -> list[str]:
        """Destination tag of each image copy, without the scheme (an index's platform copies,
        by digest, are not image copies; its index copy reads the source by digest, so the
        destination is what names the image), and of each image a `skopeo sync` was given."""
        targets: list[str] = []
        for record in self.records():
            argv = list(record["argv"])  # type: ignore[call-overload]
            if "copy" in argv and "@" not in argv[-1]:
                targets.append(argv[-1].removeprefix("docker://"))
            targets += record.get("synced") or []  # type: ignore[operator]
        return targets


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "skopeo-wrapper") -> Skopeo:
    """Write the wrapper and point ECR_TRANSFER_SKOPEO at it; fast backoff as in the other tests."""
    real = shutil.which("skopeo")
    assert real, "skopeo is not installed"
    log = tmp_path / f"{name}.jsonl"
    wrapper = tmp_path / name
    header = f"#!{sys.executable} -SE\nLOG = {str(log)!r}\nREAL = {real!r}\n"
    wrapper.write_text(header + _SCRIPT)
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("ECR_TRANSFER_SKOPEO", str(wrapper))
    monkeypatch.setenv("ECR_TRANSFER_BACKOFF_BASE", "0.05")
    return Skopeo(log, wrapper)
