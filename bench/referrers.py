"""`python -m bench.referrers`: what finding signatures and SBOMs costs a no-op run, per tag.

Two real registries on loopback; `--repos` repositories of `--tags` tags each (one small image,
tagged by manifest PUT) and a cosign-style signature tag on every `--signed`-th tag. After one run
that copies everything, the no-op run is timed `--reps` times with `copyReferrers` on and off, and
the requests it makes are counted from both registries' access logs. Writes
`bench/results/referrers-<date>.md` (and prints it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import statistics
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import date
from pathlib import Path

import yaml

from ecr_transfer import cli
from ecr_transfer.local.oci import OCI_CONFIG, OCI_MANIFEST, Layer, canonical_json, write_image
from ecr_transfer.local.registry import LocalRegistry

RESULTS = Path(__file__).resolve().parent / "results"


def _put(registry: LocalRegistry, path: str, data: bytes, content_type: str) -> str:
    request = urllib.request.Request(registry.url + path, data=data, method="PUT")
    request.add_header("Content-Type", content_type)
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers.get("Location", ""))


def _blob(registry: LocalRegistry, repo: str, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    post = urllib.request.Request(f"{registry.url}/v2/{repo}/blobs/uploads/", data=b"", method="POST")
    with urllib.request.urlopen(post, timeout=30) as response:
        location = response.headers["Location"]
    location = location if location.startswith("http") else registry.url + location
    request = urllib.request.Request(f"{location}&digest={digest}", data=data, method="PUT")
    request.add_header("Content-Type", "application/octet-stream")
    urllib.request.urlopen(request, timeout=30).close()
    return {"digest": digest, "size": len(data)}


def seed(src: LocalRegistry, dst: LocalRegistry, layout: Path, repos: int, tags: int) -> list[str]:
    """Every tag its own image (same blobs, an annotation apart), at both sides: the first run copies
    only the signatures, and a step that reads each selected image would read one per tag."""
    write_image(layout, "img", [Layer.text("app/x.txt", "bench referrers\n")])
    entries = []
    for r in range(repos):
        repo = f"bench{r}/app"
        digest = src.push(layout, "img", repo, "seed")
        dst.push(layout, "img", repo, "seed")
        doc = json.loads(src.get_manifest(repo, "seed") or b"")
        for t in range(tags):
            body = canonical_json({**doc, "annotations": {"bench.tag": f"1.{t}.0"}})
            for registry in (src, dst):
                _put(registry, f"/v2/{repo}/manifests/1.{t}.0", body, OCI_MANIFEST)
        # One cosign signature tag per repository (of its `seed` image).
        config = {**_blob(src, repo, b"{}"), "mediaType": OCI_CONFIG}
        layer = {
            **_blob(src, repo, f"sig {r}".encode()),
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        }
        sig = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]})
        _put(src, f"/v2/{repo}/manifests/{digest.replace(':', '-')}.sig", sig, OCI_MANIFEST)
        entries.append(f"{src.host}/{repo}:ALL_TAGS")
    return entries


def stale_signatures(src: LocalRegistry, repos: int) -> None:
    """A `.sig` tag per repository whose subject is no selected image (an image deleted, or a child of
    an index): what makes planning read the selected images for index children."""
    for r in range(repos):
        repo = f"bench{r}/app"
        config = {**_blob(src, repo, b"{}"), "mediaType": OCI_CONFIG}
        layer = {
            **_blob(src, repo, f"stale {r}".encode()),
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        }
        sig = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]})
        gone = hashlib.sha256(f"deleted image {r}".encode()).hexdigest()
        _put(src, f"/v2/{repo}/manifests/sha256-{gone}.sig", sig, OCI_MANIFEST)


def run(config: Path, ledger: Path) -> dict[str, object]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["run", "--config", str(config), "--ledger", str(ledger), "--json"])
    doc: dict[str, object] = json.loads(out.getvalue())
    assert code == 0, doc
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.referrers", description=__doc__)
    parser.add_argument("--repos", type=int, default=5)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-referrers-") as tmp:
        work = Path(tmp)
        src, dst = LocalRegistry(root_dir=work / "src").start(), LocalRegistry(root_dir=work / "dst").start()
        try:
            entries = seed(src, dst, work / "layout", args.repos, args.tags)
            rows = []
            for scenario, referrers in (("on", True), ("off", False), ("on, a stale .sig tag per repository", True)):
                if scenario.startswith("on, a stale"):
                    stale_signatures(src, args.repos)
                config = work / f"config-{referrers}.yaml"
                settings = {
                    "sourceType": "Public", "srcImageList": "\n".join(entries), "destType": "Registry",
                    "destRegistry": dst.host, "insecureRegistries": [src.host, dst.host], "copyReferrers": referrers,
                }  # fmt: skip
                config.write_text(yaml.safe_dump(settings))
                ledger = work / f"ledger-{referrers}.db"
                first = run(config, ledger)
                times, requests = [], Counter[str]()
                for _ in range(args.reps):
                    src.reset_requests()
                    dst.reset_requests()
                    started = time.perf_counter()
                    doc = run(config, ledger)
                    times.append(time.perf_counter() - started)
                    assert doc["counts"]["copied"] == 0, doc["counts"]  # type: ignore[index]
                    requests = Counter(f"{r.method} {r.kind}" for r in [*src.requests(), *dst.requests()])
                planned = int(first["counts"]["planned"])  # type: ignore[index]
                median = statistics.median(times)
                rows.append((scenario, planned, median, median / planned * 1000, sum(requests.values()), requests))
        finally:
            src.stop()
            dst.stop()
    tags = args.repos * args.tags
    lines = [
        f"# No-op cost of finding referrers ({date.today()})",
        "",
        f"{args.repos} repositories x {args.tags} tags ({tags} tags, `repo:ALL_TAGS`, each tag its own",
        f"image), one signature tag per repository; {args.reps} no-op runs each (median), loopback,",
        "distribution 2.8 (no referrers API). The last row adds a `.sig` tag whose subject is no selected",
        "image: planning then reads the selected images, looking for an index whose children it signs.",
        "",
        "| copyReferrers | planned | no-op s | ms per tag | requests | by kind |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, planned, median, per_tag, total, kinds in rows:
        by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        lines.append(f"| {scenario} | {planned} | {median:.2f} | {per_tag:.2f} | {total} | {by_kind} |")
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"referrers-{date.today()}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
