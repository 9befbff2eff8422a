"""An ECR source's referrers that no tag names (Notation signatures, SBOMs attached in OCI 1.1 form),
found through the registry's OCI 1.1 referrers API and copied by digest, with `referrerTypes`.

What this can show, and what it cannot: the emulator's backend is distribution 2.8, which has no
referrers API, so the emulator answers `GET /v2/<name>/referrers/<digest>` as Amazon ECR does, from
ECR's control plane (moto holds every manifest pushed through the front door, byte for byte):
the repository's manifests whose `subject` is that digest (tests/integration/ecr_referrers.py).
So the product's side is real (the request through the ECR front door with the registry token,
each descriptor's artifactType deciding `referrerTypes`, exact copies at the destination), and the
request is counted as ECR authorizes it (ecr:BatchGetImage, iam_world); ECR's own answer (its
paging, archived artifacts) is not exercised here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecr_transfer.context import build_context
from ecr_transfer.ledger.sqlite import SQLiteLedger
from ecr_transfer.local.accesslog import RequestKind, classify
from ecr_transfer.local.registry import LocalRegistry
from ecr_transfer.pipeline import RunResult, run
from ecr_transfer.settings import Settings
from support.artifacts import SPDX, artifact, manifest_descriptor
from support.iam_policy import Check

from .ecr_support import EcrEmulator, EcrPair
from .iam_world import registry_checks

pytest_plugins = ["integration.ecr_fixtures"]

NOTARY = "application/vnd.cncf.notary.signature"


@dataclass
class FrontDoor:
    """Pushes to an ECR emulator through its proxy (so ECR's control plane registers them), logged in."""

    emulator: EcrEmulator

    @property
    def url(self) -> str:
        return self.emulator.endpoint

    @property
    def authorization(self) -> str:
        return self.emulator.authorization

    def get_manifest(self, repo: str, reference: str) -> bytes | None:
        backend: LocalRegistry = self.emulator.registry
        return backend.get_manifest(repo, reference)


def transfer(settings: Settings, ledger: Path) -> RunResult:
    context = build_context(settings)
    book = SQLiteLedger(ledger)
    try:
        return run(context, book)
    finally:
        context.close()
        book.close()


def statuses(result: RunResult) -> list[tuple[str, str]]:
    return sorted((o.source.split("/", 1)[1], o.status) for o in result.outcomes)


def test_untagged_referrers_of_an_ecr_source_arrive_by_digest_filtered_by_type(
    ecr_pair: EcrPair, tmp_path: Path
) -> None:
    a, b = ecr_pair.a, ecr_pair.b
    image = a.publish(ecr_pair.images.layout, "app-a", "team/app", "1.0")
    door: Any = FrontDoor(a)
    subject = manifest_descriptor(door, "team/app", image)
    sbom = artifact(door, "team/app", SPDX, b'{"spdxVersion": "SPDX-2.3"}', subject)
    notary = artifact(door, "team/app", NOTARY, b"notary-signature", subject)
    assert a.tags("team/app") == {"1.0": image}, "the referrers are untagged: only the referrers API knows them"
    ledger = tmp_path / "ledger.db"
    only_sbom = ecr_pair.settings(srcList="SELECTED", srcImageList="team/app:1.0", referrerTypes=[SPDX])

    a.proxy.forget()
    first = transfer(only_sbom, ledger)

    assert statuses(first) == [("team/app:1.0", "copied"), (f"team/app@{sbom['digest']}", "copied")], [
        o.error for o in first.outcomes
    ]
    assert b.registry.get_manifest("team/app", sbom["digest"]) == a.registry.get_manifest("team/app", sbom["digest"])
    assert b.registry.get_manifest("team/app", notary["digest"]) is None
    assert b.digest("team/app", "1.0") == image
    asked = [(m, p) for m, p, _ in a.proxy.seen() if classify(m, p)[0] is RequestKind.REFERRERS]
    assert ("GET", f"/v2/team/app/referrers/{image}") in asked
    # Authorized as ECR documents it: ecr:BatchGetImage on the source repository, which the template's
    # lister policy grants (test_iam_as_deployed evaluates the same checks against it).
    repo_arn = f"arn:aws:ecr:us-east-1:{a.account_id}:repository/team/app"
    assert Check("ecr:BatchGetImage", repo_arn) in registry_checks(a)

    # Every type: the Notation signature arrives on the next run, alone.
    every = ecr_pair.settings(srcList="SELECTED", srcImageList="team/app:1.0")
    second = transfer(every, ledger)
    assert statuses(second) == sorted(
        [
            ("team/app:1.0", "skipped"),
            (f"team/app@{sbom['digest']}", "skipped"),
            (f"team/app@{notary['digest']}", "copied"),
        ]
    )
    assert b.registry.get_manifest("team/app", notary["digest"]) == a.registry.get_manifest(
        "team/app", notary["digest"]
    )
