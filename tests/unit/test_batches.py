"""Which images go several per skopeo process (batches.plan_units), and reading `skopeo sync`'s log."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ecr_transfer.batches import MIN_BATCH, Batch, plan_units
from ecr_transfer.blobsched import Inspection
from ecr_transfer.errors import ConflictError, PermanentError, TransientError
from ecr_transfer.model import WorkItem
from ecr_transfer.settings import Settings
from ecr_transfer.skopeo_sync import SyncRequest, build_argv, parse, source_yaml

# What skopeo 1.9.3 printed for a missing tag in a batch (copied from a real run).
MISSING = (
    'time="2026-12-02T00:59:34Z" level=error msg="Error copying ref \\"docker://src.example:5000/team/app:nope\\"" '
    'error="initializing source docker://src.example:5000/team/app:nope: reading manifest nope in '
    'src.example:5000/team/app: manifest unknown: manifest unknown"\n'
)
SUMMARY = (
    'time="2026-12-02T00:59:37Z" level=fatal msg="Sync failed due to previous reported error(s) for one or more '
    'images"\n'
)


def _item(n: int, repo: str = "team/app", *, dst: str | None = None, src: str = "src.example:5000") -> WorkItem:
    return WorkItem(
        source=f"{src}/{repo}:v{n}",
        target=f"dst.example/{dst or repo}:v{n}",
        action="copy",
        reason="not at destination",
        source_digest=f"sha256:{n:064d}",
    )


def _context(settings: Settings | None = None, limited: tuple[str, ...] = ()) -> Any:
    """What plan_units asks of the run's context: its settings, and which sources announced a pull budget."""
    return SimpleNamespace(settings=settings or Settings(), rate_limited=lambda registry: registry in limited)


def _inspection(items: list[WorkItem], size: int = 4096, *, indexes: tuple[str, ...] = ()) -> Inspection:
    blobs = {i.source: {f"layer-{i.source}": size, "base": 10} for i in items}
    images = {i.source: size + 10 for i in items if i.source not in indexes}
    return Inspection(blobs=blobs, images=images)


def test_small_images_of_a_repository_are_spread_over_the_concurrency_in_near_equal_batches() -> None:
    items = [_item(n) for n in range(200)]
    units, blobs = plan_units(items, _inspection(items), _context(), concurrency=10, most=50)
    assert [len(u.items) for u in units if isinstance(u, Batch)] == [20] * 10
    assert sorted(i.source for u in units if isinstance(u, Batch) for i in u.items) == sorted(i.source for i in items)
    # A batch's blobs are its images' blobs: the shared base once.
    first = units[0]
    assert isinstance(first, Batch) and blobs[first.source]["base"] == 10 and len(blobs[first.source]) == 21


def test_what_stays_one_image_per_process() -> None:
    small = [_item(n) for n in range(MIN_BATCH)]
    few = [_item(n, "other/few") for n in range(MIN_BATCH - 1)]
    hub = [_item(n, "library/nginx", src="docker.io") for n in range(MIN_BATCH)]
    renamed = [_item(n, "team/lib", dst="mirror/elsewhere") for n in range(MIN_BATCH)]
    big = [_item(n, "team/big") for n in range(MIN_BATCH)]
    multi = [_item(n, "team/multi") for n in range(MIN_BATCH)]
    inspection = _inspection(small + few + hub + renamed + multi, indexes=tuple(i.source for i in multi))
    inspection.images.update({i.source: 64 << 20 for i in big})
    units, _ = plan_units(small + few + hub + renamed + big + multi, inspection, _context(), 10, 50)
    batches = [u for u in units if isinstance(u, Batch)]
    assert [sorted(i.source for i in b.items) for b in batches] == [sorted(i.source for i in small)]
    assert len(units) == 1 + len(few + hub + renamed + big + multi)
    # One platform only, or a subset of platforms: the per-image copier's business.
    assert not any(
        isinstance(u, Batch)
        for u in plan_units(small, inspection, _context(Settings(include_untagged=False)), 10, 50)[0]
    )
    # A source that announced a pull budget: each pull is paced just before its own copy.
    assert not any(
        isinstance(u, Batch) for u in plan_units(small, inspection, _context(limited=("src.example:5000",)), 10, 50)[0]
    )
    # ECR_TRANSFER_BATCH_IMAGES=1: every image on its own.
    assert not any(isinstance(u, Batch) for u in plan_units(small, inspection, _context(), 10, 1)[0])


def test_a_failed_image_is_named_with_its_own_cause_and_the_summary_is_no_cause() -> None:
    result = parse(MISSING + SUMMARY, 1)
    (name,) = result.failures
    assert name == "src.example:5000/team/app:nope" and result.fatal is None
    failure = result.failures[name]
    assert isinstance(failure, PermanentError) and not isinstance(failure, ConflictError)
    assert str(failure) == (
        "initializing source docker://src.example:5000/team/app:nope: reading manifest nope in "
        "src.example:5000/team/app: manifest unknown: manifest unknown"
    )


def test_transient_conflict_and_whole_process_failures() -> None:
    flaky = MISSING.replace(
        "manifest unknown: manifest unknown", 'received unexpected HTTP status: 502 \\"Bad Gateway\\"'
    )
    (failure,) = parse(flaky + SUMMARY, 1).failures.values()
    assert isinstance(failure, TransientError) and str(failure).endswith('502 "Bad Gateway"')
    immutable = MISSING.replace("manifest unknown: manifest unknown", "tag invalid: The image tag already exists")
    assert isinstance(
        next(iter(parse(immutable.replace("already exists", "is immutable"), 1).failures.values())), ConflictError
    )
    # Died before naming any image (bad YAML, a signal): every image shares that cause.
    died = parse('time="x" level=fatal msg="Failed to unmarshal \\"/tmp/s.yaml\\": yaml: bad"\n', 1)
    assert died.failures == {} and isinstance(died.fatal, TransientError) and "Failed to unmarshal" in str(died.fatal)
    killed = parse("", -2)
    assert killed.failures == {} and str(killed.fatal) == "skopeo exited with status -2"
    assert parse("", 0).fatal is None


def test_the_sync_command_names_exact_tags_and_the_destination_parent() -> None:
    request = SyncRequest(
        source_registry="src.example:5000",
        source_repository="team/app",
        tags=("v1", "v2"),
        destination="dst.example/mirror/team",
        src_insecure=True,
    )
    assert source_yaml(request) == ('{"src.example:5000": {"images": {"team/app": ["v1", "v2"]}, "tls-verify": false}}')
    argv = build_argv(request, Path("/tmp/source.yaml"))
    assert argv[-2:] == ["/tmp/source.yaml", "dst.example/mirror/team"]
    start = argv.index("sync")
    assert argv[start : start + 6] == ["sync", "--all", "--preserve-digests", "--keep-going", "--retry-times", "0"]
