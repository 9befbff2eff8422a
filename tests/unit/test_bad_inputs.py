"""The bad-input corpus (tests/data/bad_inputs.yaml), configuration cases: exact message, exit 2,
nothing copied. Offline: the registries are sentinels on loopback that count connections, and
a configuration problem must be found before anything talks to a registry.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ecr_transfer import cli
from support.bad_inputs import assert_json_error, cases, fill, placeholders, write_config
from support.skopeo_wrapper import Skopeo, install

CONFIG_CASES = cases("config")


class Sentinel:
    """A port that counts connections and hangs up: a registry nobody may talk to."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture(scope="module")
def sentinels() -> Iterator[tuple[Sentinel, Sentinel]]:
    src, dst = Sentinel(), Sentinel()
    yield src, dst
    src.close()
    dst.close()


@pytest.fixture
def skopeo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Skopeo:
    return install(tmp_path, monkeypatch)


def test_the_corpus_is_big_enough() -> None:
    assert len(CONFIG_CASES) >= 40
    assert len({c["id"] for c in cases("config") + cases("runtime") + cases("aws")}) == len(
        cases("config") + cases("runtime") + cases("aws")
    )


@pytest.mark.parametrize("case", CONFIG_CASES, ids=[c["id"] for c in CONFIG_CASES])
def test_bad_configuration_is_named_exit_2_and_copies_nothing(
    case: dict[str, Any],
    sentinels: tuple[Sentinel, Sentinel],
    skopeo: Skopeo,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ECR_TRANSFER_TEST_UNSET_LOGIN", raising=False)
    src, dst = sentinels
    before = (src.connections, dst.connections)
    values = placeholders(tmp_path, src=src.host, dst=dst.host)
    config = write_config(case, tmp_path, values)
    values["config"] = str(config)
    ledger = tmp_path / "ledger.db"

    code = cli.main(["run", "--config", str(config), "--ledger", str(ledger), *case.get("args", [])])

    out, err = capsys.readouterr()
    assert err.rstrip("\n") == fill(case["stderr"], values)
    assert code == case.get("exit", 2)
    assert out == ""
    # With --json, a script gets one JSON object saying the same (it used to get nothing).
    json_code = cli.main(["run", "--config", str(config), "--ledger", str(ledger), "--json", *case.get("args", [])])
    out, err = capsys.readouterr()
    assert json_code == code
    assert_json_error(out, err, code)
    assert skopeo.calls() == [], "a configuration error must not start skopeo"
    assert (src.connections, dst.connections) == before, "a configuration error must not reach a registry"
    if ledger.exists():
        assert sqlite3.connect(ledger).execute("SELECT COUNT(*) FROM runs").fetchone() == (0,)
