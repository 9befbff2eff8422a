"""The CLI killed in the middle of a run (SIGKILL, SIGTERM, Ctrl-C), then run again.

The CLI runs as a real subprocess; a skopeo wrapper slows each copy down so the signal lands
while copies are in flight, and records every skopeo process (pid, argv) so the test can tell
which images were copied by which run and whether any skopeo outlived the CLI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.local.registry import LocalRegistry
from support.corpus import Corpus, build_corpus
from support.runs import count_status, ledger_rows, start_cli, wait_for
from support.skopeo_wrapper import Skopeo

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("crash-corpus"), count=8, multi_every=4, big_layer=16 * 1024)


def copied_count(ledger: Path) -> int:
    return count_status(ledger, "copied")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose: it copies nothing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def cfg(corpus: Corpus, corpus_src: LocalRegistry, config: Callable[..., Path]) -> Path:
    """The whole corpus, from corpus_src to dst_registry, two copies at a time."""
    return config(sorted(corpus.digests), src=corpus_src.host, concurrency=2)


def kill_mid_run(
    how: Callable[[subprocess.Popen[str]], None], cfg: Path, ledger: Path, corpus: Corpus, skopeo: Skopeo
) -> tuple[subprocess.Popen[str], str, str]:
    proc = start_cli(cfg, ledger, delay=1.0)

    def in_flight() -> bool:
        # Two images done and a skopeo that started a moment ago, so it is surely still running
        # (the wrapper sleeps 1 s before skopeo even starts).
        records = skopeo.records()
        return copied_count(ledger) >= 2 and bool(records) and float(records[-1]["at"]) > time.time() - 0.3  # type: ignore[arg-type]

    assert wait_for(in_flight, timeout=60, interval=0.01), proc.stderr.read() if proc.poll() is not None else ""
    assert copied_count(ledger) < len(corpus.digests), "the run finished before the signal"
    how(proc)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc, out, err


def check_second_run(
    cfg: Path, ledger: Path, corpus: Corpus, dst: LocalRegistry, skopeo: Skopeo, first_run: str
) -> dict[str, Any]:
    done_before = {r["target"] for r in ledger_rows(ledger, "SELECT target FROM outcomes WHERE status = 'copied'")}
    copies_before = len(skopeo.copied_targets())
    proc = start_cli(cfg, ledger)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["counts"]["planned"] == len(corpus.digests) and result["counts"]["failed"] == 0
    # Finished before the kill means never copied again: the second run skips them.
    recopied = set(skopeo.copied_targets()[copies_before:])
    assert not recopied & done_before, recopied & done_before
    assert {i["target"] for i in result["items"] if i["status"] == "skipped"} >= done_before
    for repo_tag, digest in corpus.digests.items():
        repo, tag = repo_tag.rsplit(":", 1)
        assert dst.manifest_digest(repo, tag) == digest, repo_tag
    # Nothing is left "in progress", and whatever the dead run left unfinished says why.
    assert ledger_rows(ledger, "SELECT * FROM outcomes WHERE status = 'in_progress'") == []
    assert ledger_rows(ledger, "SELECT * FROM latest WHERE status = 'in_progress'") == []
    for row in ledger_rows(ledger, "SELECT * FROM outcomes WHERE run_id = ? AND status = 'interrupted'", first_run):
        assert row["error"] and "the next run re-plans it" in row["error"], row
    return result


def test_sigkill_mid_run_then_rerun_finishes_without_recopying(
    corpus: Corpus, dst_registry: LocalRegistry, skopeo: Skopeo, tmp_path: Path, cfg: Path
) -> None:
    ledger = tmp_path / "ledger.db"

    proc, _, _ = kill_mid_run(lambda p: p.send_signal(signal.SIGKILL), cfg, ledger, corpus, skopeo)
    assert proc.returncode == -signal.SIGKILL
    # skopeo processes do not outlive the CLI: an orphan would go on pushing while the next
    # run copies the same image. The last one started < 0.3 s before the kill and sleeps 1 s.
    started = [int(r["pid"]) for r in skopeo.records()]  # type: ignore[call-overload]
    assert wait_for(lambda: not any(alive(pid) for pid in started), timeout=0.5), [p for p in started if alive(p)]
    (first,) = ledger_rows(ledger, "SELECT * FROM runs")
    assert first["state"] == "running", "a SIGKILLed run cannot have closed itself"
    in_flight = ledger_rows(ledger, "SELECT source FROM outcomes WHERE status = 'in_progress'")
    assert in_flight, "the kill landed between copies: nothing to recover"
    # SIGKILL skips all cleanup: the in-flight copy's authfile directory is still there...
    authdirs = {Path(str(r["authfile"]["path"])).parent for r in skopeo.records()}  # type: ignore[index]
    left = {d for d in authdirs if d.exists()}
    assert left, "expected the killed copy's authfile to outlive the kill"
    # ...and so is its digestfile's folder (ecr-transfer-copy-PID-*), which used to stay forever.
    # (a copy's digestfile, or a batch's source YAML: `skopeo sync ... SOURCE.yaml DEST`)
    work = [argv[argv.index("--digestfile") + 1] if "--digestfile" in argv else argv[-2] for argv in skopeo.calls()]
    copydirs = {Path(path).parent for path in work}
    left_copies = {d for d in copydirs if d.exists()}
    assert left_copies and all(d.name.startswith(f"ecr-transfer-copy-{proc.pid}-") for d in left_copies)
    left |= left_copies

    result = check_second_run(cfg, ledger, corpus, dst_registry, skopeo, first["run_id"])
    # ...until the next run, which removes what dead runs left behind, credentials and all.
    assert not any(d.exists() for d in left), left
    run = {r["run_id"]: r for r in ledger_rows(ledger, "SELECT * FROM runs")}
    assert run[first["run_id"]]["state"] == "interrupted"
    assert "ended before the run finished" in run[first["run_id"]]["note"]
    assert run[result["run_id"]]["state"] == "finished"
    interrupted = ledger_rows(
        ledger, "SELECT * FROM outcomes WHERE run_id = ? AND status = 'interrupted'", first["run_id"]
    )
    assert {r["source"] for r in interrupted} == {r["source"] for r in in_flight}


@pytest.mark.parametrize(
    "how",
    [
        pytest.param(lambda p: p.send_signal(signal.SIGTERM), id="SIGTERM-to-the-cli"),
        pytest.param(lambda p: os.killpg(p.pid, signal.SIGINT), id="ctrl-c-to-the-process-group"),
    ],
)
def test_graceful_stop_records_every_image_and_releases_the_ledger(
    how: Callable[[subprocess.Popen[str]], None],
    corpus: Corpus,
    corpus_src: LocalRegistry,
    dst_registry: LocalRegistry,
    skopeo: Skopeo,
    tmp_path: Path,
    cfg: Path,
) -> None:
    ledger = tmp_path / "ledger.db"

    started = time.monotonic()
    proc, out, err = kill_mid_run(how, cfg, ledger, corpus, skopeo)
    stopped_in = time.monotonic() - started

    assert proc.returncode == 130, err
    assert err.rstrip().endswith("interrupted"), err
    (first,) = ledger_rows(ledger, "SELECT * FROM runs")
    # --json still prints one object: the partial run, each image copied or interrupted.
    partial = json.loads(out)
    assert partial["exit_code"] == 130 and partial["run_id"] == first["run_id"]
    assert len(partial["items"]) == len(corpus.digests) and partial["error"].startswith("interrupted")
    assert first["state"] == "interrupted" and first["ended_at"]
    assert ledger_rows(ledger, "SELECT * FROM lease") == [], "a stopped run must release the ledger"
    outcomes = ledger_rows(ledger, "SELECT * FROM outcomes WHERE run_id = ?", first["run_id"])
    # Every planned image has exactly one final outcome: done, or interrupted with the reason.
    assert sorted(o["source"] for o in outcomes) == sorted(f"{corpus_src.host}/{r}" for r in corpus.digests)
    assert {o["status"] for o in outcomes} <= {"copied", "interrupted"}, outcomes
    for o in outcomes:
        if o["status"] == "interrupted":
            assert o["error"] and "the next run re-plans it" in o["error"], o
    # Stopping starts nothing new: no image got a second attempt (nothing else failed).
    assert all(int(o["attempts"] or 0) <= 1 for o in outcomes), outcomes
    assert stopped_in < 30, stopped_in

    check_second_run(cfg, ledger, corpus, dst_registry, skopeo, first["run_id"])
