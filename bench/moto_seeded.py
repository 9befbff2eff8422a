"""moto_server with ECR images put straight into its backend before it serves (bench.cloudplan).

Seeding 40,000 images through the API costs 10-50 ms each (HTTP, signing, moto's request
handling) and would take longer than the measurement; moto's backend takes 0.3 ms. The seed is a
JSON file named by BENCH_MOTO_SEED: {region: {repository: [tag, ...]}}, each image the manifest
bench.cloudplan.manifest(repository, tag) under its own digest.

Run: python -m bench.moto_seeded -H 127.0.0.1 -p PORT (moto_server's arguments)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ACCOUNT = "123456789012"


def seed(path: str) -> None:
    from moto.ecr.models import ecr_backends

    from bench.cloudplan import manifest

    for region, repositories in json.loads(Path(path).read_text(encoding="utf-8")).items():
        backend = ecr_backends[ACCOUNT][region]
        for name, tags in repositories.items():
            backend.create_repository(name, None, {"encryptionType": "AES256"}, {"scanOnPush": False}, "MUTABLE", [])
            for tag in tags:
                body, digest = manifest(name, tag)
                backend.put_image(name, body.decode(), tag, None, digest)


def main(argv: list[str]) -> None:
    from moto.server import main as moto_main

    seed(os.environ["BENCH_MOTO_SEED"])
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
