"""Runs started at once on one ledger: one copies, the others stop with a clear message (exit 2).

Also the lease across hosts (a CLI in a container, the ledger on a shared volume): a live run
elsewhere keeps the ledger even past the lease length (its heartbeat renews it), and a run
killed elsewhere frees it when its lease expires, instead of blocking every later run.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ecr_transfer.ledger.base import LedgerBusyError
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.local.registry import LocalRegistry
from support.bad_inputs import assert_json_error
from support.corpus import Corpus, build_corpus
from support.runs import count_status, ledger_rows, start_cli, wait_for
from support.skopeo_wrapper import Skopeo

pytestmark = pytest.mark.timeout(120)
BUSY = re.compile(
    r"error: ledger (?P<path>\S+) is in use by run (?P<run>\S+) \(pid (?P<pid>\d+) on (?P<host>\S+), started "
    r"(?P<started>\S+)\); wait for it to finish or use another --ledger"
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("concurrent-corpus"), count=6, multi_every=3, big_layer=16 * 1024)


@pytest.fixture
def cfg(
    corpus: Corpus, corpus_src: LocalRegistry, dst_registry: LocalRegistry, write_config: Callable[..., Path]
) -> Path:
    return write_config(
        sourceType="Public",
        srcImageList="\n".join(f"{corpus_src.host}/{r}" for r in sorted(corpus.digests)),
        destType="Registry",
        destRegistry=dst_registry.host,
        insecureRegistries=[corpus_src.host, dst_registry.host],
        concurrency=2,
    )


def all_at_destination(corpus: Corpus, dst: LocalRegistry) -> None:
    for repo_tag, digest in corpus.digests.items():
        repo, tag = repo_tag.rsplit(":", 1)
        assert dst.manifest_digest(repo, tag) == digest, repo_tag


def test_runs_started_at_once_one_copies_the_others_exit_2(
    cfg: Path, corpus: Corpus, dst_registry: LocalRegistry, skopeo: Skopeo, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.db"
    # 6 images, 2 at a time, >= 1 s each: the winner holds the ledger for >= 3 s.
    procs = [start_cli(cfg, ledger, delay=1.0) for _ in range(3)]
    results = [(p, *p.communicate(timeout=90)) for p in procs]

    winners = [(p, out, err) for p, out, err in results if p.returncode == 0]
    losers = [(p, out, err) for p, out, err in results if p.returncode != 0]
    assert len(winners) == 1 and len(losers) == 2, [(p.returncode, err) for p, _, err in results]
    winner, out, _ = winners[0]
    run_id = json.loads(out)["run_id"]
    for proc, out, err in losers:
        assert proc.returncode == 2, err
        assert_json_error(out, err)
        match = BUSY.fullmatch(err.strip())
        assert match, err
        assert (match["path"], match["run"], match["pid"], match["host"]) == (
            str(ledger),
            run_id,
            str(winner.pid),
            socket.gethostname(),
        )
    # Each image copied once, by the winner; the ledger is intact and holds one finished run.
    sources = skopeo.copied_targets()
    assert len(sources) == len(set(sources)) == len(corpus.digests), sources
    assert sqlite3.connect(ledger).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    runs = ledger_rows(ledger, "SELECT run_id, state FROM runs")
    assert runs == [{"run_id": run_id, "state": "finished"}]
    assert count_status(ledger, "copied") == len(corpus.digests)
    assert ledger_rows(ledger, "SELECT * FROM lease") == []
    all_at_destination(corpus, dst_registry)


def test_lease_held_on_another_host_is_kept_alive_and_expires_when_that_run_dies(
    cfg: Path,
    corpus: Corpus,
    dst_registry: LocalRegistry,
    skopeo: Skopeo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ECR_TRANSFER_LEASE_SECONDS", "2")
    ledger = tmp_path / "ledger.db"
    first = start_cli(cfg, ledger, delay=1.0)
    assert wait_for(lambda: ledger_rows(ledger, "SELECT * FROM lease"), timeout=30)
    # As if the first run were in another container: its pid cannot be checked from here.
    with sqlite3.connect(ledger, timeout=10) as db:
        db.execute("UPDATE lease SET host = 'container-7f3a'")
    (run,) = ledger_rows(ledger, "SELECT run_id FROM runs")

    time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
    busy = start_cli(cfg, ledger)
    _, err = busy.communicate(timeout=60)
    assert busy.returncode == 2, err
    assert f"is in use by run {run['run_id']} (pid {first.pid} on container-7f3a" in err

    assert wait_for(lambda: count_status(ledger, "copied") >= 2, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    copied_by_first = {r["target"] for r in ledger_rows(ledger, "SELECT target FROM outcomes WHERE status = 'copied'")}

    # The dead run's lease expires within 2 s of its last renewal; then the ledger is free.
    deadline = time.monotonic() + 10
    while True:
        copies_before = len(skopeo.copied_targets())
        again = start_cli(cfg, ledger)
        out, err = again.communicate(timeout=60)
        if again.returncode != 2 or time.monotonic() > deadline:
            break
        assert "on container-7f3a" in err, err
        time.sleep(0.5)
    assert again.returncode == 0, err
    assert (
        f"note: earlier run {run['run_id']} was interrupted: its lease expired (process {first.pid} on "
        "container-7f3a stopped renewing it)"
    ) in err
    assert not set(skopeo.copied_targets()[copies_before:]) & copied_by_first
    assert ledger_rows(ledger, "SELECT * FROM outcomes WHERE status = 'in_progress'") == []
    states = {r["run_id"]: r["state"] for r in ledger_rows(ledger, "SELECT * FROM runs")}
    assert states[run["run_id"]] == "interrupted" and states[json.loads(out)["run_id"]] == "finished"
    all_at_destination(corpus, dst_registry)


def test_same_pid_on_another_host_is_another_run(tmp_path: Path) -> None:
    # Two containers sharing a ledger volume both run the CLI as pid 1: a pid alone is no identity.
    holder = SQLiteLedger(tmp_path / "l.db")
    holder.start_run("in-container-a", "2026-01-01T00:00:00")
    with sqlite3.connect(tmp_path / "l.db", timeout=10) as db:
        db.execute("UPDATE lease SET host = 'container-a'")
    other = SQLiteLedger(tmp_path / "l.db")
    try:
        with pytest.raises(LedgerBusyError, match=r"in use by run in-container-a \(pid \d+ on container-a,"):
            other.start_run("in-container-b", "2026-01-01T00:00:01")
    finally:
        other.close()
        holder.close()
