"""Issue 15, target 5: the cloud lister planning 20,000 tags (peak memory < 512 MB, < 2 minutes).

`python -m bench.cloudplan` starts moto_server (ECR, DynamoDB, S3, SSM) and a docker-registry,
seeds both sides in sync, and runs the lister Lambda handler (src/lister/app.py, Powertools and
all) in a process of its own, as Lambda would, twice per scenario:

- `ecr-all`: an ECR source, `srcList: ALL`, `--repos` repositories holding `--tags` tags in all
  (DescribeRepositories + DescribeImages), into an ECR destination in another region;
- `public-all-tags`: a `Public` source (the local docker-registry), `repo:ALL_TAGS` for each of
  `--public-repos` repositories (tag lists + a manifest HEAD per tag), into ECR.

Every tag is already at the destination, so each run is the daily no-op. Measured per run: wall
time of the handler, the process's peak RSS (VmHWM), and the AWS requests it made by operation
(counted in botocore, so the DynamoDB cost of a no-op is exact). The Step Functions state
transitions of a run come from the definition (tests/support/asl.py walks it): bench.asl_count.
Results: bench/results/<date>-cloudplan.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from bench import measure, rawhttp, stage
from ecr_transfer.ledger.dynamodb import table_definition

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ACCOUNT = "123456789012"
SRC_REGION, DST_REGION = "us-west-2", "us-east-1"
SRC_HOST = f"{ACCOUNT}.dkr.ecr.{SRC_REGION}.amazonaws.com"
TABLE, BUCKET, LIST_PARAMETER = "bench-ledger", "bench-work", "/bench/srcImageList"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b"{}"
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()


def manifest(repo: str, tag: str) -> tuple[bytes, str]:
    """A distinct small manifest per image (its own digest), over one shared config blob."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST, "size": 2},
        "layers": [],
        "annotations": {"bench.image": f"{repo}:{tag}"},
    }
    body = json.dumps(doc).encode()
    return body, "sha256:" + hashlib.sha256(body).hexdigest()


def aws_env(url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": DST_REGION, "AWS_REGION": DST_REGION,
    }  # fmt: skip


@contextmanager
def moto_server(seed: Path) -> Iterator[str]:
    """moto_server (bench.moto_seeded) holding the ECR images of `seed` from the start."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "BENCH_MOTO_SEED": str(seed), "PYTHONPATH": str(ROOT), "MOTO_PORT": str(port)}
    argv = [sys.executable, "-m", "bench.moto_seeded", "-H", "127.0.0.1", "-p", str(port)]
    log = seed.with_suffix(".log").open("wb")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 1200  # seeding 40,000 images comes first
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: see {log.name}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def client(url: str, service: str, region: str = DST_REGION) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=url, aws_access_key_id="testing",
                        aws_secret_access_key="testing")  # fmt: skip


def seed_registry(host: str, images: dict[str, list[str]]) -> None:
    async def main() -> None:
        pool = rawhttp.Pool(host, 16)
        try:
            for repo in images:
                await rawhttp.put_blob(pool, repo, CONFIG, CONFIG_DIGEST)
            refs = [(repo, tag) for repo, tags in images.items() for tag in tags]

            async def one(ref: tuple[str, str]) -> None:
                await rawhttp.put_manifest(pool, *ref, OCI_MANIFEST, manifest(*ref)[0])

            await rawhttp.bounded(refs, 16, one)
        finally:
            pool.close()

    asyncio.run(main())


def shared(url: str) -> None:
    client(url, "dynamodb").create_table(**table_definition(TABLE))
    client(url, "s3").create_bucket(Bucket=BUCKET)


def lister_env(url: str, registry: str, scenario: str, public_list: str) -> dict[str, str]:
    env = {
        **os.environ, **aws_env(url),
        "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_SERVICE_NAME": "ecr-transfer",
        "POWERTOOLS_METRICS_NAMESPACE": "ECRTransfer", "POWERTOOLS_LOG_LEVEL": "WARNING",
        "ECR_TRANSFER_LEDGER": f"dynamodb://{TABLE}", "ECR_TRANSFER_WORK_BUCKET": BUCKET,
        "SRC_IMAGE_LIST_PARAMETER": LIST_PARAMETER, "SRC_ACCOUNT_ID": "", "SRC_CREDENTIAL": "",
        "DEST_TYPE": "Amazon_ECR", "DEST_REGION": DST_REGION, "DEST_ACCOUNT_ID": ACCOUNT, "DEST_PREFIX": "",
        "INCLUDE_UNTAGGED": "true", "CONCURRENCY": "10", "REPO_TAG_MUTABILITY": "MUTABLE",
        "PYTHONPATH": str(ROOT / "src"),
    }  # fmt: skip
    if scenario == "ecr-all":
        # moto has no registry: the source's registry API (its referrers API only) is the local
        # docker-registry, which answers 404 to it like distribution 2.8: asked once per run.
        env.update(SOURCE_TYPE="Amazon_ECR", SRC_LIST="ALL", SRC_REGION=SRC_REGION,
                   REGISTRY_ENDPOINTS=json.dumps({SRC_HOST: registry}), INSECURE_REGISTRIES=SRC_HOST)  # fmt: skip
    else:
        env.update(SOURCE_TYPE="Public", SRC_LIST="SELECTED", SRC_REGION="", INSECURE_REGISTRIES=registry)
    # The template's list parameter holds a blank for `srcList: ALL` (SSM takes no empty value).
    listed = public_list if scenario != "ecr-all" else " "
    client(url, "ssm").put_parameter(Name=LIST_PARAMETER, Value=listed, Type="String", Overwrite=True)
    return env


def run_lister(env: dict[str, str], run_id: str, profile: Path | None = None) -> dict[str, Any]:
    # cProfile wraps the whole child (imports included); its own overhead inflates wall and CPU.
    wrap = ["-m", "cProfile", "-o", str(profile.with_suffix(f".{run_id}.prof"))] if profile else []
    if profile:
        profile.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, *wrap, "-m", "bench.cloudplan", "--child", run_id]
    p = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith('{"bench"')]
    if p.returncode != 0 or not lines:
        return {"ok": False, "rc": p.returncode, "stderr": p.stderr[-2000:]}
    return {"ok": True, **json.loads(lines[-1])["bench"]}


class _Context:
    """What Powertools reads of Lambda's context object."""

    function_name = "bench-ListImagesFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = f"arn:aws:lambda:{DST_REGION}:{ACCOUNT}:function:bench-ListImagesFunction"
    aws_request_id = "bench-1"


def child(run_id: str) -> int:
    """In the lister's own process: the handler as Lambda calls it, every AWS request counted."""
    import importlib.util

    import botocore.client

    calls: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counted(self: Any, operation: str, params: Any) -> Any:
        calls[f"{self.meta.service_model.service_name}:{operation}"] += 1
        return original(self, operation, params)

    botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]

    def handler(function: str) -> Any:
        spec = importlib.util.spec_from_file_location(f"{function}_app", ROOT / "src" / function / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.lambda_handler

    started = time.perf_counter()
    event = {"run_id": run_id, "execution_arn": f"arn:aws:states:{DST_REGION}:{ACCOUNT}:execution:sm:{run_id}"}
    result = handler("lister")({**event, "input": {"trigger": "schedule"}}, _Context())
    wall = time.perf_counter() - started
    cpu = time.process_time()
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    listed = dict(calls)
    calls.clear()
    # The run's last step ("Finish run", the recorder): its requests are part of a no-op's cost too.
    finished = handler("recorder")({"action": "finish_run", "run_id": run_id}, _Context())
    keep = ("planned", "to_copy", "skipped")
    doc = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(hwm / 1024, 1), "calls": listed}
    doc.update({k: result[k] for k in keep}, finish_calls=dict(calls), finished=finished["state"])
    print(json.dumps({"bench": doc}))
    return 0


def images_of(repos: int, tags: int, prefix: str) -> dict[str, list[str]]:
    return {f"{prefix}-{r:03d}": [f"v{t}" for t in range(r, tags, repos)] for r in range(repos)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cloudplan", description=__doc__.splitlines()[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--tags", type=int, default=20000)
    p.add_argument("--repos", type=int, default=200, help="ECR source repositories (ecr-all)")
    p.add_argument("--public-repos", type=int, default=10)
    p.add_argument("--scenarios", default="ecr-all,public-all-tags")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--profile", type=Path, help="write a cProfile of each lister run to PATH.<run>.prof")
    args = p.parse_args(argv)
    if args.child:
        return child(args.child)
    from bench import asl_count

    doc: dict[str, Any] = {"date": date.today().isoformat(), "machine": measure.machine(), "tags": args.tags}
    doc["runs"] = []
    scenarios = [s for s in args.scenarios.split(",") if s]
    corpora = {
        "ecr-all": images_of(args.repos, args.tags, "ecr/app"),
        "public-all-tags": images_of(args.public_repos, args.tags, "pub/app"),
    }
    work = Path(tempfile.mkdtemp(prefix="cloudplan-"))
    seed: dict[str, dict[str, list[str]]] = {SRC_REGION: {}, DST_REGION: {}}
    for scenario in scenarios:
        seed[DST_REGION].update(corpora[scenario])
        if scenario == "ecr-all":
            seed[SRC_REGION].update(corpora[scenario])
    (work / "seed.json").write_text(json.dumps(seed))
    started = time.perf_counter()
    with moto_server(work / "seed.json") as url, stage.registry(work / "registry") as registry:
        print(f"moto seeded in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        shared(url)
        for scenario in scenarios:
            images = corpora[scenario]
            if scenario == "public-all-tags":
                seed_registry(registry.host, images)
            listed = "\n".join(f"{registry.host}/{repo}:ALL_TAGS" for repo in images)
            env = lister_env(url, registry.host, scenario, listed)
            for rep in range(args.reps):
                run = run_lister(env, f"{scenario}-{rep}", args.profile)
                run.update(scenario=scenario, rep=rep, repositories=len(images), load=os.getloadavg()[0])
                print(json.dumps(run), file=sys.stderr, flush=True)
                doc["runs"].append(run)
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["state_transitions"] = asl_count.transitions()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{doc['date']}-cloudplan"
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
