"""Running one tool once and measuring it: wall time, peak RSS, skopeo processes, registry requests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ecr_transfer.local.accesslog import RegistryRequest, RequestKind

BENCH_DIR = Path(__file__).resolve().parent
SKOPEO_WRAPPER = BENCH_DIR / "skopeo-count.sh"
CLI_PROBE = BENCH_DIR / "cli_probe.py"
CACHE_DIR = Path("/var/lib/containers/cache")
"""skopeo's blob-info cache as root: it remembers where blobs live and so decides mounts."""


@dataclass
class Run:
    """One tool run."""

    tool: str
    wall: float
    returncode: int
    stderr_tail: str = ""
    skopeo_processes: int = 0
    maxrss_self_kb: int | None = None
    """The CLI process alone (its own getrusage at exit); None for tools that are not the CLI."""
    maxrss_tree_kb: int | None = None
    """The process and every child it waited for (wait4), skopeo included."""
    boto3_imported: bool | None = None
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    """registry role ("source"/"destination") -> request kind -> count."""
    blobs_uploaded_twice: int = 0
    uploads: dict[str, int] = field(default_factory=dict)
    """Blob digest -> uploads completed at the destination (any repository; mounts are not uploads)."""
    uploaded_bytes: int = 0
    """Sum of the sizes of those uploads (blob sizes from the corpus)."""
    link_bytes: dict[str, int] = field(default_factory=dict)
    """Bytes the proxies forwarded: "source_down" (read from the source), "destination_up" (sent to it)."""
    cpu_tool_s: float = 0.0
    """CPU seconds of the tool's processes (the CLI with its skopeo children, skopeo, the floor client)."""
    cpu_registries_s: float = 0.0
    cpu_proxies_s: float = 0.0
    scale: float = 1.0
    """Measured on a sample of the tags: times and counts are multiplied by this to stand for all."""
    ok: bool = True
    note: str = ""
    scenario: str = ""
    profile: str = ""
    rep: int = 0

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class Skopeo:
    """The counting wrapper's environment: a fresh count file and blob-info cache per run."""

    def __init__(self, workdir: Path, isolate_cache: bool) -> None:
        self.workdir = workdir
        self.isolate_cache = isolate_cache
        self._n = 0

    def fresh(self) -> dict[str, str]:
        self._n += 1
        count = self.workdir / f"skopeo-count-{self._n}"
        cache = self.workdir / f"blob-info-cache-{self._n}"
        count.write_text("")
        cache.mkdir(parents=True, exist_ok=True)
        if not self.isolate_cache:
            # No mount namespaces here: forget what earlier runs taught skopeo, the global way.
            (CACHE_DIR / "blob-info-cache-v1.boltdb").unlink(missing_ok=True)
        return {
            "BENCH_SKOPEO_COUNT": str(count),
            "BENCH_BIC_DIR": str(cache),
            "BENCH_UNSHARE": "1" if self.isolate_cache else "0",
            "ECR_TRANSFER_SKOPEO": str(SKOPEO_WRAPPER),
        }

    @staticmethod
    def count(env: Mapping[str, str]) -> int:
        return len(Path(env["BENCH_SKOPEO_COUNT"]).read_text().splitlines())


def can_isolate_cache() -> bool:
    """Mount namespaces let every run start with an empty blob-info cache without touching the host's."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind /tmp {CACHE_DIR}"], capture_output=True, check=False
    )
    return probe.returncode == 0


class Proc(NamedTuple):
    wall: float
    rc: int
    tree_kb: int
    """Peak RSS of the process tree (wait4); after fork this includes what the harness had."""
    tail: str
    cpu: float
    """User + system seconds of the process and every child it waited for."""


def run_process(argv: Sequence[str], env: Mapping[str, str], *, timeout: float, cwd: Path | None = None) -> Proc:
    err_path = Path(env.get("BENCH_STDERR", "/dev/null"))
    with open(err_path, "wb") as err, open(env.get("BENCH_STDOUT", "/dev/null"), "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True,
        )  # fmt: skip
        timer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Ctrl-C: the tool runs in its own session (for the timeout kill), so take it down too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            os.waitpid(proc.pid, 0)
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    tail = ""
    if err_path != Path("/dev/null"):
        tail = err_path.read_text(errors="replace")[-1500:]
    return Proc(wall, proc.returncode, usage.ru_maxrss, tail, usage.ru_utime + usage.ru_stime)


def process_cpu(pid: int | None) -> float:
    """User + system seconds a running process has used so far (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_probe(path: Path) -> dict[str, object]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def summarize_requests(requests: Iterable[RegistryRequest]) -> dict[str, int]:
    counts = Counter(r.kind.value for r in requests)
    return dict(sorted(counts.items()))


def uploads_per_digest(requests: Iterable[RegistryRequest]) -> Counter[str]:
    """Blob digest -> uploads completed (any repository): the closing PUT of an upload session, or a
    monolithic POST carrying the digest; a mount (POST ?mount=, 201) moves no bytes and is not counted."""
    done: Counter[str] = Counter()
    for r in requests:
        closing = r.kind is RequestKind.UPLOAD_PUT or (r.kind is RequestKind.UPLOAD_POST and r.status == 201)
        if closing and 200 <= r.status < 300 and "digest=" in r.uri:
            done[r.uri.split("digest=", 1)[1].split("&", 1)[0].replace("%3A", ":").replace("%3a", ":")] += 1
    return done


def uploaded_twice(requests: Iterable[RegistryRequest]) -> int:
    """Blobs whose bytes reached the registry more than once (completed uploads, any repository)."""
    return sum(1 for n in uploads_per_digest(requests).values() if n > 1)


def machine() -> dict[str, object]:
    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        except OSError:
            return "not found"
        return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"

    mem_kb = 0
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "skopeo": version(["skopeo", "--version"]),
        "registry": version(["docker-registry", "--version"]),
        "python": version(["python3", "--version"]),
        "kernel": os.uname().release,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
