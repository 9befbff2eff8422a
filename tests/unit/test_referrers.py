"""Referrer discovery (ecr_transfer.referrers): tag conventions, transitivity, one tag list per repository."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest

from ecr_transfer.catalog import DigestResult
from ecr_transfer.errors import TransientError
from ecr_transfer.references import ImageRef
from ecr_transfer.referrers import discover, is_referrer_tag, subject_of

HOST = "registry.test"


def d(n: int) -> str:
    return f"sha256:{n:064x}"


def t(n: int, suffix: str = "") -> str:
    return f"sha256-{n:064x}{suffix}"


class Source:
    """Tags -> digests per repository, manifests by digest; counts what is asked."""

    default_registry = HOST

    def __init__(self, repos: Mapping[str, Mapping[str, str]], manifests: Mapping[str, bytes] | None = None) -> None:
        self.repos = repos
        self.manifests = manifests or {}
        self.tag_lists: list[str] = []
        self.api: dict[str, list[str]] | None = None
        """subject digest -> referrer digests the referrers API lists; None: no API."""
        self.api_calls: list[str] = []

    def all_images(self) -> list[ImageRef]:
        raise NotImplementedError

    def tags(self, repository: ImageRef) -> list[str]:
        self.tag_lists.append(repository.repository)
        if repository.repository not in self.repos:
            raise TransientError("tag list timed out")
        return list(self.repos[repository.repository])

    def pushed_at(self, repository: ImageRef) -> Mapping[str, float]:
        return {}

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]:
        return [self.repos[r.repository].get(r.tag or "") for r in refs]

    def manifest(self, ref: ImageRef) -> bytes | None:
        return self.manifests.get(ref.digest or "")

    def referrers(self, ref: ImageRef) -> list[dict[str, object]] | None:
        self.api_calls.append(ref.digest or "")
        return None if self.api is None else [{"digest": x} for x in self.api.get(ref.digest or "", [])]


def image(repo: str, tag: str) -> ImageRef:
    return ImageRef(HOST, repo, repo, tag=tag)


def test_which_tags_name_a_subject() -> None:
    assert subject_of(t(1, ".sig")) == d(1)
    assert subject_of(t(1, ".att")) == subject_of(t(1, ".sbom")) == subject_of(t(1)) == d(1)
    for tag in ["latest", t(1, ".other"), "sha256-abc.sig", t(1)[:-1], None]:
        assert not is_referrer_tag(tag)


def test_cosign_tags_tag_schema_entries_and_referrers_of_referrers() -> None:
    index = json.dumps({"manifests": [{"digest": d(20), "artifactType": "application/spdx+json"}]}).encode()
    source = Source(
        {
            "app": {
                "1.0": d(1), "2.0": d(2),
                t(1, ".sig"): d(10),   # signature of 1.0
                t(10, ".sig"): d(11),  # a signature of that signature
                t(1): d(12),           # tag-schema index of 1.0, listing the SBOM d(20)
                t(20): d(13),          # referrers of the SBOM
                t(99, ".sig"): d(14),  # refers to an image not selected
            },
        },
        {d(12): index},
    )  # fmt: skip
    found = discover(source, [(image("app", "1.0"), d(1))])
    assert [(r.ref.tag, r.subject, r.digest) for r in found] == [
        (t(1), f"{HOST}/app@{d(1)}", d(12)),
        (t(1, ".sig"), f"{HOST}/app@{d(1)}", d(10)),
        (t(20), f"{HOST}/app@{d(20)}", d(13)),
        (t(10, ".sig"), f"{HOST}/app@{d(10)}", d(11)),
    ]
    assert source.tag_lists == ["app"]


def test_one_tag_list_per_repository_and_a_failed_listing_leaves_the_image_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = Source({"a": {"1": d(1), "2": d(2), t(2, ".sig"): d(3)}})
    found = discover(source, [(image("a", "1"), d(1)), (image("a", "2"), d(2)), (image("gone", "1"), d(4))])
    assert [r.ref.tag for r in found] == [t(2, ".sig")]
    assert source.tag_lists == ["a", "gone"]
    assert f"{HOST}/gone:ALL_TAGS: tags not listed (tag list timed out)" in caplog.text


def test_the_referrers_api_adds_untagged_referrers_by_digest_once_each() -> None:
    source = Source({"app": {"1.0": d(1), t(1, ".sig"): d(10)}})
    source.api = {d(1): [d(30), d(10)], d(30): [d(31)]}  # d(10) is also tagged: found once
    found = discover(source, [(image("app", "1.0"), d(1))])
    assert [(str(r.ref), r.subject, r.digest) for r in found] == [
        (f"{HOST}/app:{t(1, '.sig')}", f"{HOST}/app@{d(1)}", d(10)),
        (f"{HOST}/app@{d(30)}", f"{HOST}/app@{d(1)}", d(30)),
        (f"{HOST}/app@{d(31)}", f"{HOST}/app@{d(30)}", d(31)),
    ]
    assert sorted(source.api_calls) == sorted([d(1), d(10), d(30), d(31)])
