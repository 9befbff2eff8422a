"""Several small images per `skopeo sync` (ecr_transfer.batches), on real registries with real skopeo.

Each image of a batch still ends with its own outcome, cause and verified digest: a failing image
fails alone (its cause parsed from skopeo's log line naming it), transient failures go on one by
one with the usual retries, and a batch stopped half way keeps what landed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.context import build_context
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.model import Outcome
from ecr_transfer.pipeline import copy_items
from ecr_transfer.planner import plan
from ecr_transfer.settings import load_yaml
from ecr_transfer.skopeo_sync import memory_cache_env
from support.corpus import Corpus, build_corpus
from support.faultproxy import FaultProxy, Rule
from support.runs import ledger_rows, start_cli, wait_for
from support.skopeo_wrapper import Skopeo

from .conftest import Transfer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """8 single-platform images sharing a base layer: team0/app:v0,2,4,6 and team1/app:v1,3,5,7."""
    return build_corpus(tmp_path_factory.mktemp("batch-corpus"), count=8, multi_every=0, big_layer=4096)


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def make(upstream: str, **options: Any) -> FaultProxy:
        started.append(FaultProxy(upstream, **options).start())
        return started[-1]

    yield make
    for proxy in started:
        proxy.stop()


class _Sink:
    def __init__(self) -> None:
        self.rows: list[Outcome] = []

    def record(self, outcome: Outcome) -> None:
        self.rows.append(outcome)

    def record_many(self, outcomes: Any) -> None:
        self.rows.extend(outcomes)


def syncs(skopeo: Skopeo) -> list[list[str]]:
    return [c for c in skopeo.calls() if "sync" in c]


def own_layer(registry: LocalRegistry, repo: str, tag: str) -> str:
    """The image's own random layer (the last one): no other image has it."""
    manifest = json.loads(registry.get_manifest(repo, tag) or b"{}")
    return str(manifest["layers"][-1]["digest"])


def test_a_batch_lands_each_image_with_its_own_verified_digest_and_a_rerun_is_a_no_op(
    transfer: Transfer, corpus: Corpus, corpus_src: LocalRegistry, skopeo: Skopeo
) -> None:
    cfg = transfer.config(sorted(corpus.digests), src=corpus_src.host, destPrefix="mirror")

    code, first = transfer.run(cfg)

    assert code == 0 and first["counts"] == {"planned": 8, "copied": 8, "skipped": 0, "failed": 0}
    # One skopeo process per repository, and no copy of its own for any image.
    assert len(syncs(skopeo)) == 2 and skopeo.copies() == [], skopeo.calls()
    assert sorted(c[-1].split("/", 1)[1] for c in syncs(skopeo)) == ["mirror/team0", "mirror/team1"]
    assert all({"--all", "--preserve-digests", "--keep-going"} <= set(c) for c in syncs(skopeo)), skopeo.calls()
    # Each sync keeps its blob-info cache in memory, not in the machine's shared BoltDB file.
    caches = [r["cache_env"] for r in skopeo.records() if "sync" in r["argv"]]  # type: ignore[operator]
    assert all(uid not in (None, "0") and str(home).endswith("/no-blob-info-cache") for uid, home in caches), caches
    for item in first["items"]:
        repo_tag = item["source"].split("/", 1)[1]
        repo, tag = repo_tag.rsplit(":", 1)
        assert item["status"] == "copied", item
        assert item["source_digest"] == item["target_digest"] == corpus.digests[repo_tag], item
        assert transfer.dst.manifest_digest(f"mirror/{repo}", tag) == corpus.digests[repo_tag], item
    rows = transfer.rows(first["run_id"])
    assert [(r["status"], int(r["attempts"])) for r in rows] == [("copied", 1)] * 8

    calls = len(skopeo.calls())
    code, second = transfer.run(cfg)
    assert code == 0 and second["counts"] == {"planned": 8, "copied": 0, "skipped": 8, "failed": 0}
    assert len(skopeo.calls()) == calls, "a rerun starts no skopeo"


def test_skopeo_keeps_a_sync_processes_blob_info_cache_in_memory(corpus_src: LocalRegistry, tmp_path: Path) -> None:
    """skopeo 1.9.3 (its containers/image) honours memory_cache_env: no BoltDB file, shared or private."""
    env = {**os.environ, **memory_cache_env(tmp_path)}
    argv = ["skopeo", "--debug", "copy", "--src-tls-verify=false"]
    argv += [f"docker://{corpus_src.host}/team0/app:v0", f"dir:{tmp_path / 'out'}"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)

    assert proc.returncode == 0, proc.stderr
    assert "Error creating parent directories for blob-info-cache-v1.boltdb, using a memory-only cache" in proc.stderr
    assert "Using blob info cache at" not in proc.stderr, proc.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_a_tag_gone_from_the_source_fails_alone_with_its_own_cause(
    transfer: Transfer, corpus: Corpus, corpus_src: LocalRegistry, skopeo: Skopeo
) -> None:
    settings = load_yaml(transfer.config(sorted(corpus.digests), src=corpus_src.host))
    context = build_context(settings)
    try:
        items = plan(settings, context.source, context.destination)
        # The tag goes after planning, before the copy (its manifest stays, by digest): skopeo
        # meets a missing tag inside the batch.
        tag = corpus_src.storage_dir / "docker/registry/v2/repositories/team0/app/_manifests/tags/v2"
        assert tag.is_dir()
        shutil.rmtree(tag)
        sink = _Sink()
        outcomes = {o.source.split("/", 1)[1]: o for o in copy_items(context, sink, "run-1", items, concurrency=2)}
    finally:
        context.close()

    gone = outcomes.pop("team0/app:v2")
    assert gone.status == "failed" and gone.attempts == 1, gone
    assert gone.error and "manifest unknown" in gone.error and f"{corpus_src.host}/team0/app:v2" in gone.error, gone
    assert "gave up" not in gone.error, "a permanent cause is not retried"
    for repo_tag, outcome in outcomes.items():
        assert outcome.status == "copied" and outcome.target_digest == corpus.digests[repo_tag], outcome
        repo, tag = repo_tag.rsplit(":", 1)
        assert transfer.dst.manifest_digest(repo, tag) == corpus.digests[repo_tag]
    assert len(syncs(skopeo)) == 2 and skopeo.copies() == [], ("no image of a batch is copied twice", skopeo.calls())
    # Each image: in progress, then exactly one final outcome.
    assert sorted(o.status for o in sink.rows).count("in_progress") == 8 and len(sink.rows) == 16


def test_a_blob_the_destination_refuses_fails_only_its_image_after_its_own_retries(
    transfer: Transfer,
    corpus: Corpus,
    corpus_src: LocalRegistry,
    skopeo: Skopeo,
    proxies: Callable[..., FaultProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = own_layer(corpus_src, "team1/app", "v3")
    # skopeo asks before uploading it; the registry answers 500 every time (our client never asks).
    rule = Rule(f"HEAD /v2/team1/app/blobs/{refused}", "5xx:instead", times=100)
    dst = proxies(transfer.dst.host, rules=[rule])
    cfg = transfer.config(sorted(corpus.digests), src=corpus_src.host, dst=dst.host)

    code, result = transfer.run(cfg)

    assert code == 1 and result["counts"] == {"planned": 8, "copied": 7, "skipped": 0, "failed": 1}
    items = {i["source"].split("/", 1)[1]: i for i in result["items"]}
    failed = items.pop("team1/app:v3")
    (row,) = [r for r in transfer.rows(result["run_id"]) if r["source"] == failed["source"]]
    assert failed["status"] == "failed" and int(row["attempts"]) == 3, dict(row)
    assert f"blob {refused} at destination" in failed["error"], failed
    assert failed["error"].endswith("(gave up after 3 attempts)"), failed
    for repo_tag, item in items.items():
        repo, tag = repo_tag.rsplit(":", 1)
        assert item["status"] == "copied" and item["target_digest"] == corpus.digests[repo_tag], item
        assert transfer.dst.manifest_digest(repo, tag) == corpus.digests[repo_tag]
    # The batch tried it once; its retries were copies of its own, and no other image was retried.
    assert len(syncs(skopeo)) == 2
    assert [c[-1].split("/", 3)[-1] for c in skopeo.copies()] == ["team1/app:v3"] * 2, skopeo.copies()


def test_a_batch_stopped_half_way_keeps_what_landed_and_the_rerun_copies_the_rest(
    config: Callable[..., Path],
    corpus: Corpus,
    corpus_src: LocalRegistry,
    dst_registry: LocalRegistry,
    skopeo: Skopeo,
    proxies: Callable[..., FaultProxy],
    tmp_path: Path,
) -> None:
    # team0/app's third image (v4) hangs on its own layer: v0 and v2 have landed by then, v6 waits.
    stalled = own_layer(corpus_src, "team0/app", "v4")
    src = proxies(corpus_src.host, rules=[Rule(f"GET /v2/team0/app/blobs/{stalled}", "stall", stall_seconds=120)])
    refs = [r for r in sorted(corpus.digests) if r.startswith("team0/")]
    cfg = config(refs, src=src.host)
    ledger = tmp_path / "ledger.db"
    proc = start_cli(cfg, ledger)
    try:
        landed = lambda: all(dst_registry.manifest_digest("team0/app", t) for t in ("v0", "v2"))  # noqa: E731
        assert wait_for(landed, timeout=60), proc.stderr.read() if proc.poll() is not None else "nothing landed"
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the CLI and its skopeo
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    partial = json.loads(out)
    rows = ledger_rows(ledger, "SELECT * FROM outcomes WHERE run_id = ?", partial["run_id"])
    status = {r["source"].rsplit(":", 1)[1]: r for r in rows}
    assert {t: r["status"] for t, r in status.items()} == {
        "v0": "copied",
        "v2": "copied",
        "v4": "interrupted",
        "v6": "interrupted",
    }, rows
    for tag in ("v0", "v2"):
        assert status[tag]["target_digest"] == corpus.digests[f"team0/app:{tag}"]
    for tag in ("v4", "v6"):
        assert "the next run re-plans it" in status[tag]["error"], status[tag]
        assert int(status[tag]["attempts"] or 0) <= 1, "stopping starts no new attempt"
    assert {i["source"] for i in partial["items"]} == {r["source"] for r in rows}

    src.rules.clear()
    rerun = start_cli(cfg, ledger)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    again = {i["source"].rsplit(":", 1)[1]: i["status"] for i in json.loads(out)["items"]}
    assert again == {"v0": "skipped", "v2": "skipped", "v4": "copied", "v6": "copied"}
    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        assert dst_registry.manifest_digest(repo, tag) == corpus.digests[ref]
