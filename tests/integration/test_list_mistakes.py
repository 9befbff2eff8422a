"""Lists with mistakes in them (issue 12, items 5-6): clashing destination tags, unreadable ALL_TAGS."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ecr_transfer.cli import main
from ecr_transfer.local.registry import LocalRegistry

from .conftest import SkopeoRecorder, Transfer


def _config(write_config: Callable[..., Path], image_list: str, dst: LocalRegistry, *hosts: str) -> Path:
    return write_config(
        sourceType="Public",
        srcImageList=image_list,
        destType="Registry",
        destRegistry=dst.host,
        insecureRegistries=[*hosts, dst.host],
    )


def test_two_sources_landing_on_one_destination_tag_are_a_config_error(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    a, b = transfer.registries(), transfer.registries()
    for registry in (a, b):
        transfer.seed({"team/app:1": "single", "team/app:2": "app-a"}, registry=registry)
    d = transfer.dst.host
    image_list = f"{a.host}/team/app:1\n# the same image from a mirror\n{b.host}/team/app:1\n{b.host}/team/app:ALL_TAGS"
    cfg = _config(transfer.write_config, image_list, transfer.dst, a.host, b.host)

    code = main(["run", "--config", str(cfg), "--ledger", str(transfer.tmp_path / "l.db")])

    assert code == 2
    assert transfer.capsys.readouterr().err.splitlines() == [
        f"error: srcImageList: line 1: {a.host}/team/app:1 and line 3: {b.host}/team/app:1 both land on "
        f"{d}/team/app:1; keep one of them",
    ]
    assert skopeo_recorder.calls() == [] and transfer.dst.catalog() == []


def test_a_clash_through_all_tags_names_the_entry_it_came_from(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    a, b = transfer.registries(), transfer.registries()
    transfer.seed({"team/app:1": "single", "team/app:2": "app-a"}, registry=a)
    transfer.seed({"team/app:2": "app-b"}, registry=b)
    cfg = _config(
        transfer.write_config, f"{a.host}/team/app:ALL_TAGS\n{b.host}/team/app:2", transfer.dst, a.host, b.host
    )

    code = main(["plan", "--config", str(cfg), "--json"])

    assert code == 2
    out = transfer.capsys.readouterr().out
    assert json.loads(out)["problems"] == [
        f"line 1: {a.host}/team/app:2 (from {a.host}/team/app:ALL_TAGS) and line 2: {b.host}/team/app:2 both land "
        f"on {transfer.dst.host}/team/app:2; keep one of them"
    ]
    assert skopeo_recorder.calls() == []


def test_an_unreadable_all_tags_entry_fails_alone_and_the_rest_is_copied(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder
) -> None:
    digests = transfer.seed({"team/app:1": "single"})
    s = transfer.src.host
    cfg = _config(transfer.write_config, f"{s}/team/app:1\n{s}/team/gone:ALL_TAGS", transfer.dst, s)
    ledger = transfer.tmp_path / "l.db"

    code = main(["run", "--config", str(cfg), "--ledger", str(ledger), "--json"])

    assert code == 1
    items = {i["source"]: i for i in json.loads(transfer.capsys.readouterr().out)["items"]}
    assert items[f"{s}/team/app:1"]["status"] == "copied"
    assert transfer.dst.manifest_digest("team/app", "1") == digests["team/app:1"]
    failed = items[f"{s}/team/gone:ALL_TAGS"]
    assert failed["status"] == "failed"
    assert failed["error"] == f"cannot list tags: tag list of {s}/team/gone: repository not found"
    rows = sqlite3.connect(ledger).execute("SELECT source, status, error FROM outcomes WHERE status = 'failed'")
    assert rows.fetchall() == [(f"{s}/team/gone:ALL_TAGS", "failed", failed["error"])]
    assert len(skopeo_recorder.copies()) == 1
