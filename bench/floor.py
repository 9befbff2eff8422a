"""The floors the contenders are measured against, as small stdlib-only processes.

- `heads`: the no-op's protocol floor: list the tags of each repository at the source, then
  HEAD every tag's manifest at the source and at the destination, both registries at once,
  `--concurrency` keep-alive connections to each; exactly the requests an ideal syncer needs.
- `upload`: the registry's upload ceiling: every blob of an OCI layout sent once as a
  monolithic upload (POST + one PUT), `--concurrency` at a time, straight from the page cache.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench import rawhttp


async def heads(src: str, dst: str, repos: list[str], concurrency: int) -> int:
    source, destination = rawhttp.Pool(src, concurrency), rawhttp.Pool(dst, concurrency)
    try:
        listed = await asyncio.gather(*(rawhttp.list_tags(source, repo) for repo in repos))
        refs = [(repo, tag) for repo, tags in zip(repos, listed, strict=True) for tag in tags]
        found: dict[tuple[str, tuple[str, str]], str | None] = {}

        async def side(pool: rawhttp.Pool, name: str) -> None:
            async def one(ref: tuple[str, str]) -> None:
                found[(name, ref)] = await rawhttp.head_manifest(pool, *ref)

            await rawhttp.bounded(refs, concurrency, one)

        await asyncio.gather(side(source, "src"), side(destination, "dst"))
    finally:
        source.close()
        destination.close()
    differ = sum(1 for ref in refs if found[("src", ref)] != found[("dst", ref)])
    print(f"{len(refs)} tags, {differ} differ")
    return differ


async def upload(dst: str, layout: Path, concurrency: int) -> int:
    pool = rawhttp.Pool(dst, concurrency)
    blobs = sorted((layout / "blobs" / "sha256").iterdir(), key=lambda p: -p.stat().st_size)
    total = 0

    async def one(path: Path) -> None:
        nonlocal total
        data = path.read_bytes()
        total += len(data)
        await rawhttp.put_blob(pool, "ceiling/blobs", data, "sha256:" + path.name)

    try:
        await rawhttp.bounded(blobs, concurrency, one)
    finally:
        pool.close()
    print(f"{len(blobs)} blobs, {total} bytes")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.floor", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    h = sub.add_parser("heads")
    h.add_argument("--src", required=True)
    h.add_argument("--dst", required=True)
    h.add_argument("--concurrency", type=int, default=16)
    h.add_argument("repos", nargs="+")
    u = sub.add_parser("upload")
    u.add_argument("--dst", required=True)
    u.add_argument("--layout", required=True, type=Path)
    u.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    if args.what == "heads":
        asyncio.run(heads(args.src, args.dst, args.repos, args.concurrency))
        return 0
    return asyncio.run(upload(args.dst, args.layout, args.concurrency))


if __name__ == "__main__":
    sys.exit(main())
