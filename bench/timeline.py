"""A cold run's timeline from the WAN proxies' request logs (`python -m bench.round2 --proxy-logs DIR`).

`python -m bench.timeline --layout LAYOUT --source SRC.log --destination DST.log` prints, per image:
when its copy asked the source for its manifest (a skopeo copy starts with that, after its pings),
when its own layer's upload closed, when its manifest PUT went out and when the answer came back,
and the round trips of each kind its repository saw; then the requests that were not skopeo's
(ours: the plan's HEADs, the source manifest GETs, the landing HEADs, the verification HEADs) by
phase, and when each shared blob landed. Times are seconds from the first request of the run.
Plain HTTP only (the logs of a TLS run are empty). Images are told apart by their own layer's
digest; pings and shared blobs are counted per run, not per image.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

_DIGEST = re.compile(r"sha256(?::|%3A)([0-9a-f]{64})")


@dataclass
class Line:
    t: float
    conn: int
    outgoing: bool
    text: str
    agent: str


def read(path: Path) -> list[Line]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        t, conn, direction, rest = raw.split(" ", 3)
        text, _, agent = rest.partition(" | ")
        out.append(Line(float(t), int(conn), direction == ">", text, agent))
    return out


@dataclass
class Image:
    ref: str
    own: str
    """Digest of the image's own (last) layer: only its copy uploads it."""
    started: float | None = None
    own_landed: float | None = None
    manifest_put: float | None = None
    done: float | None = None
    kinds: Counter[str] = field(default_factory=Counter)


def images(layout: Path) -> tuple[dict[str, Image], Counter[str]]:
    """ref -> Image, and how many images use each blob."""
    saved = json.loads((layout / "corpus.json").read_text())
    index = json.loads((layout / "index.json").read_text())
    by_name = {m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"] for m in index["manifests"]}
    found: dict[str, Image] = {}
    uses: Counter[str] = Counter()
    for name, ref in saved["tags"].items():
        doc = json.loads((layout / "blobs" / "sha256" / by_name[name].split(":", 1)[1]).read_text())
        blobs = [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
        uses.update(blobs)
        found[ref] = Image(ref, doc["layers"][-1]["digest"].split(":", 1)[1])
    return found, uses


def kind(text: str) -> str:
    method, _, uri = text.partition(" ")
    uri = uri.split(" ", 1)[0]
    if uri.rstrip("/") == "/v2":
        return "ping"
    if "/blobs/uploads" in uri:
        return "mount" if "mount=" in uri else f"upload {method}"
    if "/manifests/" in uri:
        return f"manifest {method}"
    if "/blobs/" in uri:
        return f"blob {method}"
    if "/tags/list" in uri:
        return "tags list"
    return f"{method} other"


def timeline(layout: Path, source: Path, destination: Path) -> str:
    found, uses = images(layout)
    src, dst = read(source), read(destination)
    t0 = min(line.t for line in src + dst)
    by_own = {img.own: img for img in found.values()}
    shared = {d.split(":", 1)[1] for d, n in uses.items() if n > 1}
    landed: dict[str, float] = {}
    ours: Counter[str] = Counter()
    first_skopeo = min((ln.t for ln in src + dst if ln.agent.startswith("skopeo")), default=t0)
    last_put = max((ln.t for ln in dst if ln.outgoing and kind(ln.text) == "manifest PUT"), default=t0)
    pending: dict[int, tuple[str, Line]] = {}
    for side, lines in (("source", src), ("destination", dst)):
        for ln in lines:
            if not ln.outgoing:
                # The status line answering the last request on this connection.
                asked = pending.pop(ln.conn, None)
                if asked is not None and asked[0] == "put" and ln.text.split(" ")[1] == "201":
                    for img in found.values():
                        if img.manifest_put == asked[1].t and img.done is None:
                            img.done = ln.t
                continue
            what = kind(ln.text)
            if not ln.agent.startswith("skopeo"):
                phase = "before" if ln.t < first_skopeo else ("after" if ln.t > last_put else "during")
                ours[f"{side} {what} ({phase} the copies)"] += 1
            digest = _DIGEST.search(ln.text)
            hexd = digest.group(1) if digest else None
            for img in found.values():
                repo, _, tag = img.ref.rpartition(":")
                if (
                    side == "source"
                    and what == "manifest GET"
                    and ln.text.split(" ")[1].endswith(f"/v2/{repo}/manifests/{tag}")
                ):
                    img.started = ln.t if img.started is None else img.started
                if side == "destination" and what == "manifest PUT" and f"/v2/{repo}/manifests/{tag} " in ln.text + " ":
                    img.manifest_put = ln.t
                    pending[ln.conn] = ("put", ln)
            if side == "destination" and what == "upload PUT" and hexd:
                if hexd in by_own:
                    by_own[hexd].own_landed = ln.t
                if hexd in shared:
                    landed.setdefault(hexd, ln.t)
            if side == "destination" and ln.agent.startswith("skopeo"):
                repo_of = ln.text.split(" ")[1].split("/")[2:4]
                for img in found.values():
                    if img.ref.startswith("/".join(repo_of) + ":"):
                        img.kinds[what] += 1
    rows = [
        "| image | copy asks source manifest | own layer upload closed | manifest PUT sent | done |",
        "| --- | --- | --- | --- | --- |",
    ]

    def f(x: float | None) -> str:
        return "" if x is None else f"{x - t0:.2f}"

    for img in sorted(found.values(), key=lambda i: i.started or 0):
        rows.append(f"| {img.ref} | {f(img.started)} | {f(img.own_landed)} | {f(img.manifest_put)} | {f(img.done)} |")
    rows += ["", "Shared blobs landed (upload PUT sent): " + ", ".join(f"{d[:12]} {f(t)}" for d, t in landed.items())]
    rows += ["", f"First skopeo request {f(first_skopeo)}, last manifest PUT {f(last_put)}.", ""]
    rows += ["| our requests (no skopeo user agent) | count |", "| --- | --- |"]
    rows += [f"| {k} | {n} |" for k, n in sorted(ours.items())]
    skopeo_kinds: Counter[str] = Counter()
    for ln in src + dst:
        if ln.outgoing and ln.agent.startswith("skopeo"):
            skopeo_kinds[kind(ln.text)] += 1
    rows += ["", "| skopeo requests, both sides | count |", "| --- | --- |"]
    rows += [f"| {k} | {n} |" for k, n in sorted(skopeo_kinds.items())]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__.splitlines()[0])
    p.add_argument("--layout", type=Path, required=True)
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--destination", type=Path, required=True)
    args = p.parse_args(argv)
    print(timeline(args.layout, args.source, args.destination))
    return 0


if __name__ == "__main__":
    sys.exit(main())
