"""The pipeline end to end on real registries with real skopeo, through the CLI."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.cli import main
from ecr_transfer.local.oci import SampleImages
from ecr_transfer.local.registry import LocalRegistry

from .conftest import SkopeoRecorder


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main([*args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_first_run_copies_second_copies_nothing(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    oci_images: SampleImages,
    skopeo_recorder: SkopeoRecorder,
    config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digests = seeded_src({"team/single:1.0": "single", "team/multi:latest": "multi", "apps/a:1": "app-a"})
    s = src_registry.host
    cfg = config(f"{s}/team/single:1.0\n{s}/team/multi, {s}/apps/a:1", destPrefix="mirror")
    ledger = str(tmp_path / "ledger.db")

    code, first = run_json(capsys, "run", "--config", str(cfg), "--ledger", ledger)
    assert code == 0
    assert first["counts"] == {"planned": 3, "copied": 3, "skipped": 0, "failed": 0}
    assert dst_registry.manifest_digest("mirror/team/single", "1.0") == digests["team/single:1.0"]
    # The multi-arch index arrives byte for byte: same index digest.
    assert dst_registry.manifest_digest("mirror/team/multi", "latest") == oci_images.multi.digest
    assert dst_registry.manifest_digest("mirror/apps/a", "1") == digests["apps/a:1"]
    for item in first["items"]:
        assert item["status"] == "copied" and item["source_digest"] == item["target_digest"]
    assert len(skopeo_recorder.copies()) == 3

    calls_before = len(skopeo_recorder.calls())
    code, second = run_json(capsys, "run", "--config", str(cfg), "--ledger", ledger)
    assert code == 0
    assert second["counts"] == {"planned": 3, "copied": 0, "skipped": 3, "failed": 0}
    assert {i["status"] for i in second["items"]} == {"skipped"}
    assert len(skopeo_recorder.calls()) == calls_before, "the no-op run must start no skopeo process"

    rows = sqlite3.connect(ledger).execute("SELECT run_id, status FROM outcomes ORDER BY run_id").fetchall()
    assert sorted(r[1] for r in rows) == ["copied"] * 3 + ["skipped"] * 3
    assert {r[0] for r in rows} == {first["run_id"], second["run_id"]}


def test_changed_tag_is_recopied_and_force_copies_all(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    oci_images: SampleImages,
    skopeo_recorder: SkopeoRecorder,
    config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded_src({"app:1": "app-a", "app:2": "single"})
    cfg = config(f"{src_registry.host}/app:1, {src_registry.host}/app:2")
    ledger = str(tmp_path / "l.db")
    assert main(["run", "--config", str(cfg), "--ledger", ledger]) == 0
    capsys.readouterr()

    seeded_src({"app:1": "app-b"})  # the tag moves at the source
    code, plan = run_json(capsys, "plan", "--config", str(cfg))
    assert code == 0
    assert [(i["source"].rsplit("/", 1)[1], i["status"]) for i in plan["items"]] == [
        ("app:1", "copy"),
        ("app:2", "skip"),
    ]
    assert plan["items"][0]["target_digest"] == oci_images.app_a.digest

    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", ledger)
    assert code == 0 and result["counts"]["copied"] == 1 and result["counts"]["skipped"] == 1
    assert dst_registry.manifest_digest("app", "1") == oci_images.app_b.digest

    before = len(skopeo_recorder.copies())
    code, forced = run_json(capsys, "run", "--config", str(cfg), "--ledger", ledger, "--force")
    assert code == 0 and forced["counts"]["copied"] == 2
    assert len(skopeo_recorder.copies()) == before + 2


def test_all_tags_follows_pagination(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digests = seeded_src({"repo:a": "single", "repo:b": "app-a", "repo:c": "app-b", "other:x": "single"})
    # Pages of 2 make the registry answer with Link: rel="next" headers.
    monkeypatch.setattr("ecr_transfer.registry.client.TAG_PAGE_SIZE", 2)
    cfg = config(f"{src_registry.host}/repo:ALL_TAGS")
    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db"))
    assert code == 0
    assert sorted(i["target"].rsplit("/", 1)[1] for i in result["items"]) == ["repo:a", "repo:b", "repo:c"]
    assert sorted(dst_registry.tags("repo")) == ["a", "b", "c"]
    assert dst_registry.manifest_digest("repo", "b") == digests["repo:b"]
    assert dst_registry.tags("other") == []


def test_digest_pinned_references(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digests = seeded_src({"pin:1": "single", "pin:2": "multi"})
    s = src_registry.host
    cfg = config(f"{s}/pin@{digests['pin:1']}\n{s}/pin:two@{digests['pin:2']}")
    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db"))
    assert code == 0, json.dumps(result["items"])
    targets = sorted(i["target"] for i in result["items"])
    assert targets == sorted([f"{dst_registry.host}/pin@{digests['pin:1']}", f"{dst_registry.host}/pin:two"])
    assert dst_registry.manifest_digest("pin", digests["pin:1"]) == digests["pin:1"]
    assert dst_registry.manifest_digest("pin", "two") == digests["pin:2"]
    code, again = run_json(capsys, "run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db"))
    assert again["counts"]["skipped"] == 2


def test_failing_image_does_not_stop_the_others(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    skopeo_recorder: SkopeoRecorder,
    config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    digests = seeded_src({"ok:1": "single"})
    s = src_registry.host
    cfg = config(f"{s}/ok:1\n{s}/missing:1")
    ledger = str(tmp_path / "l.db")
    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", ledger)
    assert code == 1
    assert result["counts"] == {"planned": 2, "copied": 1, "skipped": 0, "failed": 1}
    failed = next(i for i in result["items"] if i["status"] == "failed")
    assert failed["source"] == f"{s}/missing:1"
    assert failed["error"] == f"{s}/missing:1: not found at the source (manifest unknown)"
    assert dst_registry.manifest_digest("ok", "1") == digests["ok:1"]
    row = (
        sqlite3.connect(ledger)
        .execute("SELECT status, attempts, error FROM outcomes WHERE source = ?", (f"{s}/missing:1",))
        .fetchone()
    )
    assert row == ("failed", "1", failed["error"]), "a permanent error is recorded once, not retried"
    # Nothing was tried for the missing image: the source lookup already said "not found".
    assert all("missing" not in " ".join(c) for c in skopeo_recorder.copies())


def test_unreachable_destination_is_transient_and_retried(
    src_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    skopeo_recorder: SkopeoRecorder,
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded_src({"ok:1": "single"})
    cfg = write_config(
        sourceType="Public",
        srcImageList=f"{src_registry.host}/ok:1",
        destType="Registry",
        destRegistry="127.0.0.1:9",
        insecureRegistries=[src_registry.host, "127.0.0.1:9"],
    )
    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db"))
    assert code == 1
    item = result["items"][0]
    assert item["status"] == "failed"
    assert "connection refused" in item["error"] and "(gave up after 3 attempts)" in item["error"]
    assert len(skopeo_recorder.copies()) == 3


def test_basic_auth_registries_with_credentials_from_settings(
    registry_factory: Callable[..., LocalRegistry],
    seeded_src: Callable[..., dict[str, str]],
    skopeo_recorder: SkopeoRecorder,
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = registry_factory(auth=("alice", "src-Pa55-word"))
    dst = registry_factory(auth=("bob", "dst-Pa55-word"))
    digests = seeded_src({"private/app:1": "multi"}, registry=src)
    secret = tmp_path / "src-secret.json"
    secret.write_text(json.dumps({"username": "alice", "password": "src-Pa55-word"}))
    monkeypatch.setenv("DEST_LOGIN", json.dumps({"username": "bob", "password": "dst-Pa55-word"}))
    cfg = write_config(
        sourceType="Public",
        srcImageList=f"{src.host}/private/app:1",
        srcCredential=f"file:{secret}",
        destType="Registry",
        destRegistry=dst.host,
        destCredential="env:DEST_LOGIN",
        insecureRegistries=[src.host, dst.host],
    )
    ledger = tmp_path / "l.db"
    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", str(ledger))
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


def test_wrong_credentials_fail_without_retries(
    registry_factory: Callable[..., LocalRegistry],
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    skopeo_recorder: SkopeoRecorder,
    write_config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = registry_factory(auth=("alice", "right"))
    seeded_src({"private/app:1": "single"}, registry=src)
    monkeypatch.setenv("SRC_LOGIN", json.dumps({"username": "alice", "password": "wrong"}))
    cfg = write_config(
        sourceType="Public",
        srcImageList=f"{src.host}/private/app:1",
        srcCredential="env:SRC_LOGIN",
        destType="Registry",
        destRegistry=dst_registry.host,
        insecureRegistries=[src.host, dst_registry.host],
    )
    code, result = run_json(capsys, "run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db"))
    assert code == 1
    assert result["items"][0]["error"] == (
        f"manifest {src.host}/private/app:1: unauthorized (HTTP 401) at {src.host}, "
        "with the credentials from the secret env:SRC_LOGIN"
    )
    assert skopeo_recorder.copies() == []


def test_bad_config_exits_2_and_copies_nothing(
    src_registry: LocalRegistry,
    dst_registry: LocalRegistry,
    seeded_src: Callable[..., dict[str, str]],
    skopeo_recorder: SkopeoRecorder,
    config: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seeded_src({"ok:1": "single"})
    cfg = config(f"{src_registry.host}/ok:1\n{src_registry.host}/Bad:1\n\n{src_registry.host}/ok:-x")
    code = main(["run", "--config", str(cfg), "--ledger", str(tmp_path / "l.db")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"srcImageList line 2: '{src_registry.host}/Bad:1': invalid repository name component 'Bad'" in err
    assert f"srcImageList line 4: '{src_registry.host}/ok:-x': invalid tag '-x'" in err
    assert skopeo_recorder.calls() == []
    assert dst_registry.catalog() == []
    assert (
        not (tmp_path / "l.db").exists()
        or not sqlite3.connect(tmp_path / "l.db").execute("SELECT * FROM outcomes").fetchall()
    )
