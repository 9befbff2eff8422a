#!/usr/bin/env python3
"""Render the dashboard body (src/ecr_transfer/cloud/dashboard.py) into template.yaml's DashboardBody.

Run it after changing a metric or the dashboard: `python scripts/render_dashboard.py` (rewrites
template.yaml), `--check` exits 1 when the template's copy is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ecr_transfer.cloud import dashboard  # noqa: E402

MARKER = "# rendered by scripts/render_dashboard.py"


def rendered(template: str) -> str:
    lines = template.splitlines(keepends=True)
    (start,) = [n for n, line in enumerate(lines) if MARKER in line]
    indent = " " * (len(lines[start]) - len(lines[start].lstrip()) + 2)
    end = start + 1
    while end < len(lines) and (lines[end].startswith(indent) or not lines[end].strip()):
        end += 1
    body = [indent + line + "\n" for line in dashboard.render().splitlines()]
    return "".join(lines[: start + 1] + body + lines[end:])


def main(argv: list[str]) -> int:
    path = ROOT / "template.yaml"
    current = path.read_text(encoding="utf-8")
    fresh = rendered(current)
    if "--check" in argv:
        if fresh != current:
            print("template.yaml: the dashboard body is out of date; run scripts/render_dashboard.py", file=sys.stderr)
            return 1
        return 0
    path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
