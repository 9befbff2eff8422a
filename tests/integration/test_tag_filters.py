"""Tag filters on a real registry: a repository with a few dozen version-like and other tags.

The tags are real manifests at a real registry (three images written by Python, each tagged many
times by a manifest PUT), listed through the tag-list API, planned, filtered and copied by skopeo.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer.cli import main
from ecr_transfer.local.oci import OCI_MANIFEST
from ecr_transfer.local.registry import LocalRegistry

from .conftest import SkopeoRecorder, Transfer

VERSIONS = [
    "0.9.0", "1.23.4", "1.24.0", "v1.24.9", "1.25", "1.25.0", "1.25.1", "v1.25.2", "1.25.3-alpine",
    "1.26.0-rc.1", "1.26.0-rc.2", "1.26.0", "1.26.1", "v1.26.2", "1.26.2-alpine", "1.27", "1.27.0",
    "1.27.1", "1.27.2-rc.1", "2.0.0-beta.1", "2.0.0", "2.1.0", "1.2.3.4", "01.2.3",
]  # fmt: skip
OTHERS = ["latest", "stable", "mainline", "main-3f2a9c1", "nightly", "edge", "alpine", "sha-0b1c2d", "1.x", "dev"]
TAGS = VERSIONS + OTHERS


def put_tags(registry: LocalRegistry, repo: str, manifests: list[bytes], tags: list[str]) -> None:
    """Tag already pushed manifests many times (one PUT each: faster than a skopeo push per tag)."""
    for n, tag in enumerate(tags):
        request = urllib.request.Request(
            f"{registry.url}/v2/{repo}/manifests/{tag}",
            data=manifests[n % len(manifests)],
            method="PUT",
            headers={"Content-Type": OCI_MANIFEST},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201


def plan_json(capsys: pytest.CaptureFixture[str], cfg: Path) -> dict[str, Any]:
    assert main(["plan", "--config", str(cfg), "--json"]) == 0
    return dict(json.loads(capsys.readouterr().out))


def test_filters_select_versions_explicit_tags_always_transfer(
    transfer: Transfer, skopeo_recorder: SkopeoRecorder, tmp_path: Path
) -> None:
    digests = [
        transfer.src.push(transfer.images.layout, "app-a", "team/app", "keep"),
        transfer.src.push(transfer.images.layout, "app-b", "team/app", "seed-b"),
    ]
    manifests = [transfer.src.get_manifest("team/app", t) or b"" for t in ("keep", "seed-b")]
    put_tags(transfer.src, "team/app", manifests, TAGS)
    assert len(transfer.src.tags("team/app")) == len(TAGS) + 2 == 36
    digest_of = {tag: digests[n % 2] for n, tag in enumerate(TAGS)}
    kept = ["1.27", "1.27.0", "1.27.1", "v1.26.2"]  # the newest 4 in range, in the tag list's order
    s = transfer.src.host
    # 0.9.0 is written explicitly: transferred although every filter would drop it.
    cfg = transfer.config(
        f"{s}/team/app:ALL_TAGS\n{s}/team/app:0.9.0",
        tagExclude=[r".*-alpine", "seed-.*"],
        tagSemver=">=1.25.0 <2",
        tagLatest=4,
    )

    doc = plan_json(transfer.capsys, cfg)
    planned = [i["source"] for i in doc["items"]]
    assert planned == [f"{s}/team/app:{t}" for t in [*kept, "0.9.0"]]
    assert {i["status"] for i in doc["items"]} == {"copy"}
    assert doc["selection"] == [
        {
            "entry": f"{s}/team/app:ALL_TAGS",
            "listed": 36,
            "after": [
                {"filter": "tagExclude", "kept": 33},
                {"filter": "tagSemver", "kept": 10},
                {"filter": "tagLatest", "kept": 4},
            ],
        }
    ]
    reasons = {d["source"].rsplit(":", 1)[1]: d["reason"] for d in doc["filtered"]}
    # Everything listed is either planned or filtered with a reason; the explicit tag is not "filtered".
    assert sorted(reasons) == sorted({*TAGS, "keep", "seed-b"} - {*kept, "0.9.0"})
    assert reasons["1.25.3-alpine"] == "tagExclude: matches '.*-alpine'"
    assert reasons["seed-b"] == "tagExclude: matches 'seed-.*'"
    assert reasons["latest"] == "tagSemver: not a version"
    assert reasons["1.2.3.4"] == "tagSemver: not a version"
    assert reasons["1.24.0"] == "tagSemver: 1.24.0 is outside '>=1.25.0 <2'"
    assert reasons["2.0.0"] == "tagSemver: 2.0.0 is outside '>=1.25.0 <2'"
    assert reasons["1.26.0-rc.1"] == "tagSemver: 1.26.0-rc.1 is a pre-release and '>=1.25.0 <2' names none"
    assert reasons["keep"] == "tagSemver: not a version"
    assert reasons["1.26.1"] == "tagLatest: not among the newest 4"
    assert reasons["1.26.0"] == "tagLatest: not among the newest 4"

    assert main(["plan", "--config", str(cfg)]) == 0
    table = transfer.capsys.readouterr().out
    assert table.splitlines()[:2] == [
        f"{s}/team/app:ALL_TAGS: 36 tags; tagExclude 36 -> 33, tagSemver 33 -> 10, tagLatest 10 -> 4",
        "31 tags filtered out (plan --json lists each with its reason)",
    ]

    ledger = str(tmp_path / "ledger.db")
    assert main(["run", "--config", str(cfg), "--ledger", ledger, "--json"]) == 0
    result = json.loads(transfer.capsys.readouterr().out)
    assert result["counts"] == {"planned": 5, "copied": 5, "skipped": 0, "failed": 0}
    assert sorted(transfer.dst.tags("team/app")) == sorted([*kept, "0.9.0"])
    for tag in [*kept, "0.9.0"]:
        assert transfer.dst.manifest_digest("team/app", tag) == digest_of[tag]
    assert sorted(skopeo_recorder.images()) == sorted(f"{transfer.dst.host}/team/app:{t}" for t in [*kept, "0.9.0"])

    # Incremental: the filtered selection is stable, the rerun copies nothing.
    calls = len(skopeo_recorder.calls())
    assert main(["run", "--config", str(cfg), "--ledger", ledger, "--json"]) == 0
    assert json.loads(transfer.capsys.readouterr().out)["counts"]["skipped"] == 5
    assert len(skopeo_recorder.calls()) == calls


def test_include_patterns_from_text_and_no_filter_means_every_tag(transfer: Transfer) -> None:
    transfer.src.push(transfer.images.layout, "single", "team/app", "seed")
    put_tags(transfer.src, "team/app", [transfer.src.get_manifest("team/app", "seed") or b""], TAGS)
    s = transfer.src.host
    # The form an environment variable or stack parameter takes: one string, commas inside {} kept.
    cfg = transfer.config(f"{s}/team/app:ALL_TAGS", tagInclude=r"v?1\.2[67](\.[0-9]{1,2})?, stable")
    doc = plan_json(transfer.capsys, cfg)
    assert sorted(i["source"].rsplit(":", 1)[1] for i in doc["items"]) == sorted(
        ["1.26.0", "1.26.1", "v1.26.2", "1.27", "1.27.0", "1.27.1", "stable"]
    )
    assert doc["selection"][0]["after"] == [{"filter": "tagInclude", "kept": 7}]

    unfiltered = plan_json(transfer.capsys, transfer.config(f"{s}/team/app:ALL_TAGS"))
    assert len(unfiltered["items"]) == len(TAGS) + 1
    assert unfiltered["filtered"] == [] and unfiltered["selection"] == []
