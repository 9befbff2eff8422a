"""The README's first command runs `ecr-transfer demo`; it must keep working and keep its promise."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ecr_transfer.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_demo_transfers_then_copies_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summaries = re.findall(r"run \S+: (\d+) planned, (\d+) copied, (\d+) skipped, (\d+) failed", out)
    assert summaries == [("4", "4", "0", "0"), ("4", "0", "4", "0")]
    assert "all destination digests equal the source digests (the multi-arch index included)" in out
    assert (tmp_path / "ledger.db").exists()


def test_readme_commands_are_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert block, "README must open with a sh code block holding the two commands"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    setup_and_demo, tests = commands
    assert setup_and_demo.endswith("ecr-transfer demo")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines(), f"{tests!r} must be a line of .ci/run"
    assert all(Path(ROOT, shlex.split(part)[0]).exists() for part in tests.split("&&") if "/" in part.split()[0])
