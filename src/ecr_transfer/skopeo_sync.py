"""Running `skopeo sync` over a YAML list of exact tags: several images in one skopeo process.

A `skopeo copy` per image costs a process start, a policy load and fresh connections, about as
much CPU as copying a small image itself. skopeo 1.9.3 `sync --src yaml` copies exact tags of
one repository one after another in a single process; with `--keep-going` a failing image does
not stop the others, and each failure is logged as one line naming the image:

    level=error msg="Error copying ref \\"docker://HOST/REPO:TAG\\"" error="CAUSE"

which is how each image gets its own cause here. sync has no `--digestfile` (1.17): what landed is
read from the destination afterwards (batches.py), in one bulk lookup.

Each sync process keeps its blob-info cache in memory (memory_cache_env): skopeo as root keeps it
in /var/lib/containers/cache, one BoltDB file every skopeo of the machine opens, locks (flock) and
fsyncs several times per image: ~8 ms of CPU per small image (39 -> 31 ms a run's whole CPU per
image, measured in bench/results/2026-12-02-cold-s4.md; the wall time did not change). A batch
holds small images of one repository, where that cache (cross-repository mount candidates, learnt
across runs) saves at most a few small uploads; within one process the memory cache still serves
the batch's later images.

Destinations are named by sync as `DEST/<last path component of the source repository>:<tag>`,
so one process writes one destination repository: `DEST` is the target repository's parent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ecr_transfer import envvars
from ecr_transfer.errors import TransferError
from ecr_transfer.processes import COPY_PREFIX, private_tempdir
from ecr_transfer.skopeo import ProcessOptions, classify, copy_timeout, global_argv, run, time_left

_FAILED_REF = re.compile(r'msg="Error copying ref \\"docker://([^"\\]+)\\"" error="((?:[^"\\]|\\.)*)"')
_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"')
_SUMMARY = "Sync failed due to previous reported error(s)"
"""sync's own last word when some image failed: not a cause of its own."""
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


@dataclass(frozen=True, slots=True)
class SyncRequest(ProcessOptions):
    """Tags of one source repository, to one destination repository (`destination`/basename)."""

    source_registry: str
    source_repository: str
    tags: tuple[str, ...]
    destination: str
    """`host/parent`: sync appends the source repository's last path component and the tag."""

    def name(self, tag: str) -> str:
        """How skopeo names the source image of `tag` in its log lines (after `docker://`)."""
        return f"{self.source_registry}/{self.source_repository}:{tag}"


@dataclass(frozen=True, slots=True)
class SyncResult:
    failures: dict[str, TransferError]
    """Source image name (SyncRequest.name) -> its own classified failure."""
    fatal: TransferError | None = None
    """What stopped skopeo before or between images (it names no image), if anything did."""


def source_yaml(request: SyncRequest) -> str:
    """The `--src yaml` document: exact tags, and the source's TLS settings (the YAML overrides the flags)."""
    registry: dict[str, object] = {
        "images": {request.source_repository: list(request.tags)},
        "tls-verify": not request.src_insecure,
    }
    if request.src_cert_dir is not None and not request.src_insecure:
        registry["cert-dir"] = str(request.src_cert_dir)
    return json.dumps({request.source_registry: registry})  # YAML is a superset of JSON


def build_argv(request: SyncRequest, source: Path) -> list[str]:
    argv = global_argv(request)
    # --preserve-digests: an image that would need converting fails instead of landing under another digest.
    argv += ["sync", "--all", "--preserve-digests", "--keep-going", "--retry-times", "0"]
    argv += ["--src", "yaml", "--dest", "docker"]
    if request.authfile is not None:
        argv += ["--authfile", str(request.authfile)]
    if request.dest_insecure:
        argv.append("--dest-tls-verify=false")
    elif request.dest_cert_dir is not None:
        argv += ["--dest-cert-dir", str(request.dest_cert_dir)]
    return [*argv, str(source), request.destination]


def _unescape(text: str) -> str:
    # logrus quotes values the way Go's %q does.
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def parse(stderr: str, returncode: int) -> SyncResult:
    """Each failed image's own cause; what failed the whole process when no image is named."""
    failures = {name: classify(_unescape(cause), 1) for name, cause in _FAILED_REF.findall(stderr)}
    fatal = None
    if returncode != 0:
        causes = [_unescape(m) for m in _FATAL.findall(stderr) if not m.startswith(_SUMMARY)]
        if causes or not failures:
            # Died before or between images (bad flags, a signal, a crash): every image it did
            # not name shares this cause.
            text = "\n".join(f'level=fatal msg="{c}"' for c in causes) if causes else stderr
            fatal = classify(text, returncode)
    return SyncResult(failures=failures, fatal=fatal)


def memory_cache_env(work: Path) -> dict[str, str]:
    """Environment giving one skopeo 1.9.3 a memory-only blob-info cache (see the module docstring).

    skopeo has no flag for it. containers/image puts the cache in XDG_DATA_HOME only for a
    non-root user, whom it recognises by _CONTAINERS_ROOTLESS_UID (it only picks that path, it
    changes no privilege); when the cache directory cannot be created there (XDG_DATA_HOME is a
    file), it falls back to an in-memory cache, which is what we want.
    """
    blocker = work / "no-blob-info-cache"
    blocker.touch()
    return {envvars.CONTAINERS_ROOTLESS_UID: str(os.geteuid() or 65534), envvars.XDG_DATA_HOME: str(blocker)}


def sync(request: SyncRequest, timeout: float | None = None) -> SyncResult:
    """Run one `skopeo sync`; never raises for an image's failure (they are in the result)."""
    try:
        timeout = time_left(timeout or copy_timeout())  # a Lambda invocation's deadline (skopeo.deadline)
    except TransferError as exc:
        return SyncResult(failures={}, fatal=exc)
    work = private_tempdir(COPY_PREFIX)
    try:
        source = Path(work) / "source.yaml"
        source.write_text(source_yaml(request), encoding="utf-8")
        options = dataclasses.replace(request, extra_env={**request.extra_env, **memory_cache_env(Path(work))})
        try:
            proc = run(build_argv(options, source), options, timeout, "sync")
        except TransferError as exc:
            return SyncResult(failures={}, fatal=exc)
        return parse(proc.stderr, proc.returncode)
    finally:
        shutil.rmtree(work, ignore_errors=True)
