"""The pipeline end to end on real registries with real skopeo, through the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ecr_transfer.cli import main

from .conftest import SkopeoRecorder, Transfer


def test_first_run_copies_second_copies_nothing(transfer: Transfer, skopeo_recorder: SkopeoRecorder) -> None:
    t, dst = transfer, transfer.dst
    digests = t.seed({"team/single:1.0": "single", "team/multi:latest": "multi", "apps/a:1": "app-a"})
    s = t.src.host
    cfg = t.config(f"{s}/team/single:1.0\n{s}/team/multi, {s}/apps/a:1", destPrefix="mirror")
    ledger = str(t.ledger)

    code, first = t.run(cfg)
    assert code == 0
    assert first["counts"] == {"planned": 3, "copied": 3, "skipped": 0, "failed": 0}
    assert dst.manifest_digest("mirror/team/single", "1.0") == digests["team/single:1.0"]
    # The multi-arch index arrives byte for byte: same index digest.
    assert dst.manifest_digest("mirror/team/multi", "latest") == t.images.multi.digest
    assert dst.manifest_digest("mirror/apps/a", "1") == digests["apps/a:1"]
    for item in first["items"]:
        assert item["status"] == "copied" and item["source_digest"] == item["target_digest"]
    assert len(skopeo_recorder.copies()) == 3

    calls_before = len(skopeo_recorder.calls())
    code, second = t.run(cfg)
    assert code == 0
    assert second["counts"] == {"planned": 3, "copied": 0, "skipped": 3, "failed": 0}
    assert {i["status"] for i in second["items"]} == {"skipped"}
    assert len(skopeo_recorder.calls()) == calls_before, "the no-op run must start no skopeo process"

    rows = sqlite3.connect(ledger).execute("SELECT run_id, status FROM outcomes ORDER BY run_id").fetchall()
    assert sorted(r[1] for r in rows) == ["copied"] * 3 + ["skipped"] * 3
    assert {r[0] for r in rows} == {first["run_id"], second["run_id"]}


def test_a_moved_tag_is_copied_again_and_force_copies_every_image(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    t = transfer
    t.seed({"app:1": "app-a", "app:2": "single"})
    cfg = t.config(f"{t.src.host}/app:1, {t.src.host}/app:2")
    assert t.run(cfg)[0] == 0

    t.seed({"app:1": "app-b"})  # the tag moves at the source
    code, plan = t.plan(cfg)
    assert code == 0
    assert [(i["source"].rsplit("/", 1)[1], i["status"]) for i in plan["items"]] == [
        ("app:1", "copy"),
        ("app:2", "skip"),
    ]
    assert plan["items"][0]["target_digest"] == t.images.app_a.digest

    code, result = t.run(cfg)
    assert code == 0 and result["counts"]["copied"] == 1 and result["counts"]["skipped"] == 1
    assert t.dst.manifest_digest("app", "1") == t.images.app_b.digest

    before = len(skopeo_recorder.copies())
    code, forced = t.run(cfg, "--force")
    assert code == 0 and forced["counts"]["copied"] == 2
    assert len(skopeo_recorder.copies()) == before + 2


def test_all_tags_follows_the_tag_list_across_pages(transfer: Transfer, monkeypatch: pytest.MonkeyPatch) -> None:
    t, dst = transfer, transfer.dst
    digests = t.seed({"repo:a": "single", "repo:b": "app-a", "repo:c": "app-b", "other:x": "single"})
    # Pages of 2 make the registry answer with Link: rel="next" headers.
    monkeypatch.setattr("ecr_transfer.registry.client.TAG_PAGE_SIZE", 2)
    code, result = t.run(t.config(f"{t.src.host}/repo:ALL_TAGS"))
    assert code == 0
    assert sorted(i["target"].rsplit("/", 1)[1] for i in result["items"]) == ["repo:a", "repo:b", "repo:c"]
    assert sorted(dst.tags("repo")) == ["a", "b", "c"]
    assert dst.manifest_digest("repo", "b") == digests["repo:b"]
    assert dst.tags("other") == []


def test_digest_pinned_references_are_copied_by_digest_and_skipped_when_there(transfer: Transfer) -> None:
    t, dst = transfer, transfer.dst
    digests = t.seed({"pin:1": "single", "pin:2": "multi"})
    s = t.src.host
    cfg = t.config(f"{s}/pin@{digests['pin:1']}\n{s}/pin:two@{digests['pin:2']}")
    code, result = t.run(cfg)
    assert code == 0, json.dumps(result["items"])
    targets = sorted(i["target"] for i in result["items"])
    assert targets == sorted([f"{dst.host}/pin@{digests['pin:1']}", f"{dst.host}/pin:two"])
    assert dst.manifest_digest("pin", digests["pin:1"]) == digests["pin:1"]
    assert dst.manifest_digest("pin", "two") == digests["pin:2"]
    code, again = t.run(cfg)
    assert again["counts"]["skipped"] == 2


def test_failing_image_does_not_stop_the_others(transfer: Transfer, skopeo_recorder: SkopeoRecorder) -> None:
    t = transfer
    digests = t.seed({"ok:1": "single"})
    s = t.src.host
    ledger = str(t.ledger)
    code, result = t.run(t.config(f"{s}/ok:1\n{s}/missing:1"))
    assert code == 1
    assert result["counts"] == {"planned": 2, "copied": 1, "skipped": 0, "failed": 1}
    failed = next(i for i in result["items"] if i["status"] == "failed")
    assert failed["source"] == f"{s}/missing:1"
    assert failed["error"] == "not found at the source (manifest unknown)"
    assert t.dst.manifest_digest("ok", "1") == digests["ok:1"]
    row = (
        sqlite3.connect(ledger)
        .execute("SELECT status, attempts, error FROM outcomes WHERE source = ?", (f"{s}/missing:1",))
        .fetchone()
    )
    assert row == ("failed", "1", failed["error"]), "a permanent error is recorded once, not retried"
    # Nothing was tried for the missing image: the source lookup already said "not found".
    assert all("missing" not in " ".join(c) for c in skopeo_recorder.copies())


def test_unreachable_destination_is_transient_and_retried(transfer: Transfer, skopeo_recorder: SkopeoRecorder) -> None:
    transfer.seed({"ok:1": "single"})
    code, result = transfer.run(transfer.config(["ok:1"], dst="127.0.0.1:9"))
    assert code == 1
    item = result["items"][0]
    assert item["status"] == "failed"
    assert "connection refused" in item["error"] and "(gave up after 3 attempts)" in item["error"]
    assert len(skopeo_recorder.copies()) == 3


def test_logins_from_a_file_and_an_env_secret_reach_both_registries_and_nothing_shows_them(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    src = transfer.registries(auth=("alice", "src-Pa55-word"))
    dst = transfer.registries(auth=("bob", "dst-Pa55-word"))
    digests = transfer.seed({"private/app:1": "multi"}, registry=src)
    cfg = transfer.config(
        ["private/app:1"],
        src=src.host,
        dst=dst.host,
        srcCredential=transfer.secret("alice", "src-Pa55-word"),
        destCredential=transfer.secret("bob", "dst-Pa55-word", env="DEST_LOGIN"),
    )
    ledger = transfer.ledger
    code, result = transfer.run(cfg)
    assert code == 0, result
    assert dst.manifest_digest("private/app", "1") == digests["private/app:1"]
    # No credential on any command line, in the JSON, or in the ledger.
    calls = json.dumps(skopeo_recorder.calls())
    for secret_text in ("src-Pa55-word", "dst-Pa55-word"):
        assert secret_text not in calls
        assert secret_text not in json.dumps(result)
        assert secret_text.encode() not in ledger.read_bytes()
    # The credentials went through an authfile, which is gone after the copy.
    argv = skopeo_recorder.copies()[0]
    assert not Path(argv[argv.index("--authfile") + 1]).exists()


def test_wrong_credentials_fail_without_retries(transfer: Transfer, skopeo_recorder: SkopeoRecorder) -> None:
    src = transfer.registries(auth=("alice", "right"))
    transfer.seed({"private/app:1": "single"}, registry=src)
    secret = transfer.secret("alice", "wrong", env="SRC_LOGIN")
    code, result = transfer.run(transfer.config(["private/app:1"], src=src.host, srcCredential=secret))
    assert code == 1
    assert result["items"][0]["error"] == (
        f"manifest {src.host}/private/app:1: unauthorized (HTTP 401) at {src.host}, "
        "with the credentials from the secret env:SRC_LOGIN"
    )
    assert skopeo_recorder.copies() == []


def test_bad_config_exits_2_names_each_bad_line_and_copies_nothing(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    t, s = transfer, transfer.src.host
    t.seed({"ok:1": "single"})
    cfg = t.config(f"{s}/ok:1\n{s}/Bad:1\n\n{s}/ok:-x")
    code = main(["run", "--config", str(cfg), "--ledger", str(t.ledger)])
    err = t.capsys.readouterr().err
    assert code == 2
    assert f"srcImageList line 2: '{s}/Bad:1': invalid repository name component 'Bad'" in err
    assert f"srcImageList line 4: '{s}/ok:-x': invalid tag '-x'" in err
    assert skopeo_recorder.calls() == []
    assert t.dst.catalog() == []
    assert not t.ledger.exists() or not sqlite3.connect(t.ledger).execute("SELECT * FROM outcomes").fetchall()
