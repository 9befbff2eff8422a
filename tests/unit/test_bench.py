"""The benchmark harness's own logic: sampling, ordering, counting, targets, and the WAN proxy."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bench import report, scenarios
from bench.measure import Run, uploaded_twice, uploads_per_digest
from bench.proxy import Link

from ecr_transfer.local.accesslog import parse_access_log

REPO = Path(__file__).resolve().parents[2]


def test_sample_spreads_over_repositories_and_reports_the_scale() -> None:
    repos = {"a/big": [str(i) for i in range(80)], "a/x": [str(i) for i in range(20)]}
    picked, scale = scenarios.sample(repos, 10)
    assert sum(len(t) for t in picked.values()) == 10
    assert set(picked) == {"a/big", "a/x"}
    assert scale == 10.0
    assert scenarios.sample(repos, 500) == (repos, 1.0)


def test_rotate_puts_each_tool_first_once_and_filters() -> None:
    items = [(name, lambda t, tag: None) for name in ("a", "b", "c")]
    firsts = [scenarios.rotate(items, rep)[0][0] for rep in range(3)]  # type: ignore[arg-type]
    assert firsts == ["a", "b", "c"]
    assert [n for n, _ in scenarios.rotate(items, 1, ("a", "c"))] == ["c", "a"]  # type: ignore[arg-type]


def test_uploaded_twice_counts_completed_uploads_of_the_same_digest_in_any_repository() -> None:
    line = (
        '127.0.0.1 - - [29/Nov/2026:11:53:19 +0000] "PUT /v2/{repo}/blobs/uploads/{n}?_state=x&digest=sha256%3A{d} '
        'HTTP/1.1" {status} 0 "" "skopeo/1.9.3"'
    )
    log = "\n".join(
        [
            line.format(repo="a", n=1, d="aa", status=201),
            line.format(repo="b", n=2, d="aa", status=201),
            line.format(repo="b", n=3, d="bb", status=201),
            line.format(repo="c", n=4, d="bb", status=400),
        ]
    )
    assert uploaded_twice(parse_access_log(log)) == 1


def test_uploads_per_digest_counts_monolithic_posts_and_not_mounts() -> None:
    line = '127.0.0.1 - - [29/Nov/2026:11:53:19 +0000] "{method} /v2/a/blobs/uploads/{rest} HTTP/1.1" {status} 0 "" "x"'
    log = "\n".join(
        [
            line.format(method="POST", rest="?digest=sha256%3Aaa", status=201),
            line.format(method="POST", rest="?from=b&mount=sha256%3Aaa", status=201),
            line.format(method="POST", rest="", status=202),
            line.format(method="PUT", rest="u1?_state=x&digest=sha256%3Abb", status=201),
            line.format(method="PUT", rest="u2?_state=x&digest=sha256%3Aaa", status=201),
        ]
    )
    assert uploads_per_digest(parse_access_log(log)) == {"sha256:aa": 2, "sha256:bb": 1}


def test_the_shared_link_serializes_every_connections_bytes_at_its_rate() -> None:
    async def main() -> tuple[float, int]:
        link = Link(bytes_per_s=1_000_000)
        start = asyncio.get_running_loop().time()
        # Two connections asking at once: the second chunk leaves after the first one's serialization.
        await asyncio.gather(link.send(50_000), link.send(50_000))
        return link.free_at - start, link.sent

    busy, sent = asyncio.run(main())
    assert sent == 100_000
    assert busy == pytest.approx(0.1, abs=0.01)


def _run(scenario: str, profile: str, tool: str, wall: float, **extra: object) -> Run:
    run = Run(tool, wall, 0, scenario=scenario, profile=profile)
    for key, value in extra.items():
        setattr(run, key, value)
    return run


def test_checks_compute_ratios_from_medians_and_judge_each_target() -> None:
    runs = [
        _run("warm", "loopback", "ecr-transfer", 1.0, requests={"source": {"manifest_head": 1000, "tags_list": 2}}),
        _run("warm", "loopback", "ecr-transfer", 3.0, requests={"destination": {"manifest_head": 1000}}),
        _run("warm", "loopback", "skopeo sync", 6.0),
        _run("warm", "loopback", "protocol floor", 1.5),
        _run("cold", "loopback", "ecr-transfer", 10.0, blobs_uploaded_twice=1),
        _run("cold", "loopback", "upload ceiling", 9.0),
    ]
    res = report.Results(runs, {"warm": 1000, "cold": 20, "change": 1000})
    found = {c.name: c for c in report.checks(res, ("loopback",))}
    speed = found["warm no-op, loopback: skopeo sync time / ecr-transfer time"]
    assert speed.measured == 3.0 and speed.passed  # median of 1.0 and 3.0 is 2.0
    assert found["warm no-op, loopback: ecr-transfer time / protocol floor"].passed is True
    assert found["cold, loopback: ecr-transfer throughput / upload ceiling"].measured == pytest.approx(0.9)
    assert found["cold: blobs uploaded twice by ecr-transfer (worst run)"].passed is False
    assert found["cold, loopback: skopeo sync time / ecr-transfer time"].passed is None  # not measured


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_proxy_adds_the_delay_each_way_and_a_round_trip_for_a_new_connection() -> None:
    async def main() -> tuple[float, float]:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        upstream = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        proxy = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.proxy", "--upstream", upstream, "--min-ms", "40", "--max-ms", "40",
            "--max-seconds", "20", stdout=subprocess.PIPE, cwd=REPO,
        )  # fmt: skip
        assert proxy.stdout is not None
        port = int(await proxy.stdout.readline())
        try:
            started = time.perf_counter()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            await reader.readexactly(4)
            first = time.perf_counter() - started
            started = time.perf_counter()
            writer.write(b"pong")
            await reader.readexactly(4)
            second = time.perf_counter() - started
            writer.close()
        finally:
            proxy.terminate()
            await proxy.wait()
            server.close()
        return first, second

    first, second = asyncio.run(main())
    # A new connection: handshake (1 RTT) + request and answer (1 RTT); then one RTT per exchange.
    assert 0.155 <= first < 0.5
    assert 0.075 <= second < 0.3
