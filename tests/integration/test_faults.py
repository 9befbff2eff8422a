"""Real faults between ecr-transfer and real registries: nothing lost, nothing wrong reported copied.

A fault proxy (tests/support/faultproxy.py) sits in front of the source and the destination
registry; image references name the proxies, so the planner's HEADs and skopeo's blob and
manifest traffic both go through them. The destination is then checked directly.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer import copier
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.model import FINAL_STATUSES
from ecr_transfer.skopeo import CopyRequest
from support.corpus import Corpus, build_corpus
from support.faultproxy import FaultProxy, Rule
from support.runs import count_status, start_cli, wait_for
from support.skopeo_wrapper import Skopeo

from .conftest import Transfer

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("fault-corpus"), count=30, multi_every=6, big_layer=64 * 1024)


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def make(upstream: str, **faults: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **faults).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def test_run_through_faulty_network_loses_nothing_and_reports_nothing_wrong(
    transfer: Transfer,
    corpus: Corpus,
    corpus_src: LocalRegistry,
    proxies: Callable[..., FaultProxy],
    skopeo: Skopeo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faults = {"drop_rate": 0.10, "error_rate": 0.05, "burst_rate": 0.01, "burst_length": 3, "stall_rate": 0.01}
    src = proxies(corpus_src.host, seed=6, stall_seconds=0.5, **faults)
    dst = proxies(transfer.dst.host, seed=60, stall_seconds=0.5, **faults)
    monkeypatch.setenv("ECR_TRANSFER_MAX_ATTEMPTS", "4")
    refs = sorted(corpus.digests)
    assert len(refs) >= 30
    cfg = transfer.config(refs, src=src.host, dst=dst.host, concurrency=8)

    code, first = transfer.run(cfg)

    # The faults really happened, on both sides and of every kind.
    assert src.faults()["drop"] + dst.faults()["drop"] >= 5, (src.faults(), dst.faults())
    for kind in ("drop", "5xx", "429", "stall"):
        assert src.faults()[kind] + dst.faults()[kind] >= 1, (kind, src.faults(), dst.faults())
    # Every planned image has exactly one final outcome, in the JSON and in the ledger.
    assert first["counts"]["planned"] == len(refs)
    assert sorted(i["source"] for i in first["items"]) == sorted(f"{src.host}/{r}" for r in refs)
    rows = transfer.rows(first["run_id"])
    assert len(rows) == len(refs) and {r["source"] for r in rows} == {i["source"] for i in first["items"]}
    assert {r["status"] for r in rows} <= FINAL_STATUSES - {"interrupted"}
    copied = [r for r in rows if r["status"] == "copied"]
    failed = [r for r in rows if r["status"] != "copied"]
    assert code == (1 if failed else 0)
    for row in copied:
        # Copied means: the destination holds exactly the source's digest (checked past the proxy).
        repo_tag = row["source"].split("/", 1)[1]
        repo, tag = repo_tag.rsplit(":", 1)
        assert row["source_digest"] == row["target_digest"] == corpus.digests[repo_tag], row["source"]
        assert transfer.dst.manifest_digest(repo, tag) == corpus.digests[repo_tag], row["source"]
    for row in failed:
        # Failed with its cause, and every injected fault was taken as transient (retried to
        # the end): none was mistaken for a permanent error such as "unauthorized".
        assert row["status"] == "failed" and row["error"].endswith("(gave up after 4 attempts)"), dict(row)
    # Typically 60-75% get through four attempts at these rates; the point is that none is
    # wrong, not that all pass (the next run finishes them), so the floor is low.
    assert len(copied) >= len(refs) // 4, [dict(r) for r in failed]

    # Faults stop: the next run finishes exactly the failed images and re-copies none of the others.
    src.enabled = dst.enabled = False
    copies_before = len(skopeo.copies())
    code, second = transfer.run(cfg)
    assert code == 0, [i for i in second["items"] if i["status"] == "failed"]
    status = {i["source"]: i["status"] for i in second["items"]}
    assert {s for s, st in status.items() if st == "copied"} <= {r["source"] for r in failed}
    assert {r["source"] for r in copied} <= {s for s, st in status.items() if st == "skipped"}
    assert len(skopeo.copies()) - copies_before == status_count(status, "copied")
    for repo_tag, digest in corpus.digests.items():
        repo, tag = repo_tag.rsplit(":", 1)
        assert transfer.dst.manifest_digest(repo, tag) == digest, repo_tag


def status_count(status: dict[str, str], wanted: str) -> int:
    return sum(1 for s in status.values() if s == wanted)


def test_planning_lookups_retry_transient_errors(
    transfer: Transfer,
    proxies: Callable[..., FaultProxy],
    skopeo: Skopeo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digests = transfer.seed(
        {"a/one:1": "single", "a/two:1": "multi", "b/three:1": "app-a", "b/four:1": "app-b", "all:x": "single"}
    )
    transfer.seed({"a/one:1": "single", "b/three:1": "app-a"}, registry=transfer.dst)
    src = proxies(
        transfer.src.host,
        rules=[
            Rule(r"^HEAD /v2/.+/manifests/", "5xx:instead", times=4),
            Rule(r"^GET /v2/all/tags/list", "drop:before-response"),
        ],
    )
    dst = proxies(transfer.dst.host, retry_after=1, rules=[Rule(r"^HEAD /v2/.+/manifests/", "429", times=2)])
    # Four injected 503s could all land on one image's lookups: allow that many retries.
    monkeypatch.setenv("ECR_TRANSFER_MAX_ATTEMPTS", "5")
    cfg = transfer.config(["a/one:1", "a/two:1", "b/three:1", "b/four:1", "all:ALL_TAGS"], src=src.host, dst=dst.host)

    started = time.monotonic()
    code, plan = transfer.plan(cfg)
    elapsed = time.monotonic() - started

    assert code == 0, transfer.capsys.readouterr().err
    assert src.faults() == Counter({"5xx": 4, "drop": 1}) and dst.faults() == Counter({"429": 2})
    got = {i["source"].split("/", 1)[1]: (i["status"], i["reason"], i["source_digest"]) for i in plan["items"]}
    assert got == {
        "a/one:1": ("skip", "destination has the same digest", digests["a/one:1"]),
        "a/two:1": ("copy", "not at destination", digests["a/two:1"]),
        "b/three:1": ("skip", "destination has the same digest", digests["b/three:1"]),
        "b/four:1": ("copy", "not at destination", digests["b/four:1"]),
        "all:x": ("copy", "not at destination", digests["all:x"]),
    }
    assert elapsed >= 1.0, "the 429's Retry-After: 1 was not waited for"

    code, result = transfer.run(cfg)
    assert code == 0, result
    assert result["counts"] == {"planned": 5, "copied": 3, "skipped": 2, "failed": 0}
    assert sorted(s.split("/", 1)[1] for s in skopeo.copied_targets()) == ["a/two:1", "all:x", "b/four:1"]


def test_stalled_transfer_is_killed_after_the_copy_timeout_and_retried(
    transfer: Transfer,
    proxies: Callable[..., FaultProxy],
    skopeo: Skopeo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digests = transfer.seed({"slow/app:1": "app-a"})
    # The first layer download sends half its bytes, then nothing for 30 s: skopeo has no read
    # timeout, so without ours the copy would sit there.
    src = proxies(transfer.src.host, rules=[Rule(r"^GET /v2/slow/app/blobs/", "stall", stall_seconds=30)])
    monkeypatch.setenv("ECR_TRANSFER_COPY_TIMEOUT", "3")
    cfg = transfer.config(["slow/app:1"], src=src.host)

    started = time.monotonic()
    code, result = transfer.run(cfg)

    assert code == 0, result
    assert src.faults() == Counter({"stall": 1})
    assert 3 <= time.monotonic() - started < 20
    (row,) = transfer.rows(result["run_id"])
    assert (row["status"], row["attempts"], row["target_digest"]) == ("copied", "2", digests["slow/app:1"])
    assert transfer.dst.manifest_digest("slow/app", "1") == digests["slow/app:1"]
    assert len(skopeo.copies()) == 2


@pytest.mark.parametrize("side", ["source", "destination"])
def test_registry_away_mid_run_is_reported_and_the_next_run_finishes(
    transfer: Transfer,
    side: str,
    corpus: Corpus,
    corpus_src: LocalRegistry,
    skopeo: Skopeo,
) -> None:
    refs = sorted(corpus.digests)[:8]
    cfg = transfer.config(refs, src=corpus_src.host, concurrency=2)
    ledger = transfer.ledger
    away = corpus_src if side == "source" else transfer.dst

    proc = start_cli(cfg, ledger, delay=0.3)
    assert wait_for(lambda: count_status(ledger, "copied") >= 2, timeout=60)
    away.stop(keep_storage=True)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        away.start()  # same port, same storage: the registry is back

    first = json.loads(out)
    assert proc.returncode == 1, err
    assert first["counts"]["planned"] == len(refs)
    failed = [i for i in first["items"] if i["status"] == "failed"]
    copied = [i for i in first["items"] if i["status"] == "copied"]
    assert failed and len(copied) >= 2 and len(failed) + len(copied) == len(refs), first["items"]
    for item in failed:
        # The report names the image and the cause: the registry refused connections.
        assert "connection refused" in item["error"] and away.host in item["error"], item
        assert item["error"].endswith("(gave up after 3 attempts)"), item
    assert count_status(ledger, "in_progress") == 0

    copies_before = len(skopeo.copied_targets())
    code, second = subprocess_run(cfg, ledger)
    assert code == 0, second
    # Only failed images are copied again. A failed one may be skipped: when the registry went
    # away right after a push landed, the attempt failed, but the next run finds it in place.
    recopied = skopeo.copied_targets()[copies_before:]
    assert len(recopied) == len(set(recopied)) and set(recopied) <= {i["target"] for i in failed}, (first, second)
    assert {i["source"] for i in second["items"] if i["status"] == "skipped"} >= {i["source"] for i in copied}
    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        assert transfer.dst.manifest_digest(repo, tag) == corpus.digests[ref], ref


def subprocess_run(cfg: Path, ledger: Path) -> tuple[int, dict[str, Any]]:
    proc = start_cli(cfg, ledger)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, json.loads(out) if out.strip() else {"stderr": err}


def test_a_manifest_changed_in_transit_is_not_reported_copied(
    transfer: Transfer,
    proxies: Callable[..., FaultProxy],
    skopeo: Skopeo,
) -> None:
    digests = transfer.seed({"team/app:1": "single"})
    # skopeo reads the manifest by tag once; this once it arrives valid but altered.
    src = proxies(transfer.src.host, rules=[Rule(r"^GET /v2/team/app/manifests/1$", "tamper")])
    cfg = transfer.config(["team/app:1"], src=src.host)

    code, result = transfer.run(cfg)

    assert src.faults() == Counter({"tamper": 1})
    (row,) = transfer.rows(result["run_id"])
    # The altered copy is caught (the source still has the planned digest) and redone.
    assert code == 0, result
    assert (row["status"], row["attempts"]) == ("copied", "2"), dict(row)
    assert row["source_digest"] == row["target_digest"] == digests["team/app:1"]
    assert transfer.dst.manifest_digest("team/app", "1") == digests["team/app:1"]
    assert "source changed" not in (row["reason"] or "")


def test_a_tag_moved_during_the_run_is_copied_as_it_is_now(
    transfer: Transfer,
    skopeo: Skopeo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The counterpart of the test above: a new digest is right when the source really moved.
    planned = transfer.seed({"team/app:1": "app-a"})["team/app:1"]
    real_copy = copier.skopeo_copy

    def move_tag_then_copy(request: CopyRequest, timeout: float | None = None) -> str:
        transfer.seed({"team/app:1": "app-b"})
        return real_copy(request, timeout)

    monkeypatch.setattr(copier, "skopeo_copy", move_tag_then_copy)
    cfg = transfer.config(["team/app:1"])

    code, result = transfer.run(cfg)

    assert code == 0, result
    (row,) = transfer.rows(result["run_id"])
    assert (row["status"], row["attempts"]) == ("copied", "1")
    assert row["source_digest"] == row["target_digest"] == transfer.images.app_b.digest
    assert row["reason"] == f"not at destination; source changed during the run (planned {planned})"
    assert transfer.dst.manifest_digest("team/app", "1") == transfer.images.app_b.digest


def test_an_unexpected_error_in_one_copy_fails_that_image_only(
    transfer: Transfer,
    skopeo: Skopeo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digests = transfer.seed({"team/ok:1": "single", "team/bug:1": "app-a"})
    real_copy = copier.skopeo_copy

    def buggy(request: CopyRequest, timeout: float | None = None) -> str:
        if "team/bug" in request.source:
            raise KeyError("digest")  # stands for any bug: not a TransferError
        return real_copy(request, timeout)

    monkeypatch.setattr(copier, "skopeo_copy", buggy)
    cfg = transfer.config(["team/bug:1", "team/ok:1"])
    ledger = transfer.ledger

    code, result = transfer.run(cfg)

    assert code == 1
    status = {i["source"].split("/", 1)[1]: (i["status"], i["error"]) for i in result["items"]}
    assert status == {"team/bug:1": ("failed", "unexpected error: KeyError: 'digest'"), "team/ok:1": ("copied", None)}
    assert transfer.dst.manifest_digest("team/ok", "1") == digests["team/ok:1"]
    (run,) = sqlite3.connect(ledger).execute("SELECT state FROM runs").fetchall()
    assert run == ("finished",)
