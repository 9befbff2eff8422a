"""Docker logins held by credential helpers, and insecure HTTPS registries (issue 12, items 3-4)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ecr_transfer.cli import main
from support.credhelper import install_helper
from support.runs import start_cli
from support.skopeo_wrapper import Skopeo
from support.tls import TlsRegistry, make_ca

from .conftest import Transfer


@pytest.mark.parametrize("style", ["credHelpers", "credsStore"])
def test_a_login_kept_by_a_credential_helper_is_used_by_both_halves(
    style: str, transfer: Transfer, skopeo: Skopeo
) -> None:
    src = transfer.registries(auth=("alice", "helper-Pa55"))
    digests = transfer.seed({"team/app:1": "single", "team/app:2": "app-a"}, registry=src)
    helper = install_helper(transfer.tmp_path / "bin", transfer.monkeypatch)
    helper.holds(src.host, "alice", "helper-Pa55")
    docker = Path(os.environ["DOCKER_CONFIG"])
    docker.mkdir(parents=True, exist_ok=True)
    entry = {"credHelpers": {src.host: "test"}} if style == "credHelpers" else {"credsStore": "test"}
    (docker / "config.json").write_text(json.dumps({"auths": {src.host: {}}, **entry}))
    cfg = transfer.write_config(
        sourceType="Public",
        srcImageList=f"{src.host}/team/app:1\n{src.host}/team/app:2",
        destType="Registry",
        destRegistry=transfer.dst.host,
        insecureRegistries=[src.host, transfer.dst.host],
    )

    code = main(["run", "--config", str(cfg), "--ledger", str(transfer.tmp_path / "l.db"), "--json"])
    result = json.loads(transfer.capsys.readouterr().out)

    assert code == 0, result
    assert [i["status"] for i in result["items"]] == ["copied", "copied"]
    assert transfer.dst.manifest_digest("team/app", "2") == digests["team/app:2"]
    # Asked once for the run, only about the host it needed (not the destination: credsStore
    # answers "not found" for it, once).
    assert helper.calls().count(["get", src.host]) == 1
    # skopeo got the helper's login through the private authfile, never on its command line.
    records = skopeo.records()
    assert all(src.host in r["authfile"]["hosts"] for r in records)  # type: ignore[index]
    assert all("helper-Pa55" not in " ".join(r["argv"]) for r in records)  # type: ignore[arg-type]


def test_an_insecure_https_registry_is_warned_about_once(transfer: Transfer, skopeo: Skopeo) -> None:
    src = TlsRegistry(make_ca(transfer.tmp_path / "ca")).start()
    host = src.host
    try:
        tags = [str(n) for n in range(6)]
        for tag in tags:
            src.push(transfer.images.layout, "single", "team/app", tag)
        cfg = transfer.write_config(
            sourceType="Public",
            srcImageList="\n".join(f"{src.host}/team/app:{t}" for t in tags),
            destType="Registry",
            destRegistry=transfer.dst.host,
            insecureRegistries=[src.host, transfer.dst.host],
        )
        proc = start_cli(cfg, transfer.tmp_path / "l.db")
        out, err = proc.communicate(timeout=120)
    finally:
        src.stop()

    assert proc.returncode == 0, err
    assert json.loads(out)["counts"]["copied"] == len(tags)
    assert "InsecureRequestWarning" not in err
    warnings = [line for line in err.splitlines() if "verification is off" in line]
    assert len(warnings) == 1 and warnings[0].endswith(
        f"{host}: TLS certificate verification is off (insecureRegistries)"
    )
