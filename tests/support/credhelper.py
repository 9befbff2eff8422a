"""A real `docker-credential-test` helper on PATH: the docker credential-helper protocol itself.

`get` reads the server from stdin and answers `{"ServerURL", "Username", "Secret"}` from a JSON
store file, or exits 1 with "credentials not found in native keychain" as docker's helpers do.
Every call is appended to a log, so tests can count them.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

_SCRIPT = r"""
import json, sys
action = sys.argv[1]
server = sys.stdin.read().strip()
with open(LOG, "a") as f:
    f.write(json.dumps([action, server]) + "\n")
store = json.load(open(STORE))
if action != "get" or server not in store:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = store[server]
print(json.dumps({"ServerURL": server, "Username": user, "Secret": secret}))
"""


class CredentialHelper:
    def __init__(self, store: Path, log: Path) -> None:
        self.store = store
        self.log = log

    def holds(self, server: str, username: str, secret: str) -> None:
        data = json.loads(self.store.read_text())
        data[server] = [username, secret]
        self.store.write_text(json.dumps(data))

    def calls(self) -> list[list[str]]:
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []


def install_helper(directory: Path, monkeypatch: pytest.MonkeyPatch, name: str = "test") -> CredentialHelper:
    directory.mkdir(parents=True, exist_ok=True)
    store, log = directory / "store.json", directory / "calls.jsonl"
    store.write_text("{}")
    program = directory / f"docker-credential-{name}"
    program.write_text(f"#!{sys.executable} -SE\nLOG = {str(log)!r}\nSTORE = {str(store)!r}\n{_SCRIPT}")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{directory}:{__import__('os').environ['PATH']}")
    return CredentialHelper(store, log)
