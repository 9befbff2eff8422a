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
    found = discover(source, [(image("app", "1.0"), d(1))]).found
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
    found = discover(source, [(image("a", "1"), d(1)), (image("a", "2"), d(2)), (image("gone", "1"), d(4))]).found
    assert [r.ref.tag for r in found] == [t(2, ".sig")]
    assert source.tag_lists == ["a", "gone"]
    assert f"{HOST}/gone:ALL_TAGS: tags not listed (tag list timed out)" in caplog.text


def test_the_referrers_api_adds_untagged_referrers_by_digest_once_each() -> None:
    source = Source({"app": {"1.0": d(1), t(1, ".sig"): d(10)}})
    source.api = {d(1): [d(30), d(10)], d(30): [d(31)]}  # d(10) is also tagged: found once
    found = discover(source, [(image("app", "1.0"), d(1))]).found
    assert [(str(r.ref), r.subject, r.digest) for r in found] == [
        (f"{HOST}/app:{t(1, '.sig')}", f"{HOST}/app@{d(1)}", d(10)),
        (f"{HOST}/app@{d(30)}", f"{HOST}/app@{d(1)}", d(30)),
        (f"{HOST}/app@{d(31)}", f"{HOST}/app@{d(30)}", d(31)),
    ]
    assert sorted(source.api_calls) == sorted([d(1), d(10), d(30), d(31)])


SPDX = "application/spdx+json"
COSIGN_SIG = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTARY = "application/vnd.cncf.notary.signature"


class CountingSource(Source):
    """Also records which tags were looked up and which manifests read."""

    def __init__(self, repos: Mapping[str, Mapping[str, str]], manifests: Mapping[str, bytes] | None = None) -> None:
        super().__init__(repos, manifests)
        self.looked_up: list[str] = []
        self.read: list[str] = []

    def digests(self, refs: Sequence[ImageRef]) -> list[DigestResult]:
        self.looked_up += [r.tag or "" for r in refs]
        return super().digests(refs)

    def manifest(self, ref: ImageRef) -> bytes | None:
        self.read.append(ref.digest or "")
        return super().manifest(ref)


def test_referrer_types_decide_cosign_tags_by_name_and_index_entries_by_type() -> None:
    """Only SPDX: the .sig/.att tags are left out without a lookup; the tag-schema index of 1.0 lists an
    SPDX SBOM and a Notation signature, so it is left out and the SBOM copied by digest; the SBOM's own
    referrers (a cosign signature of it) stay behind; an .sbom tag counts as cosign's SBOM type."""
    index = {"manifests": [{"digest": d(20), "artifactType": SPDX}, {"digest": d(21), "artifactType": NOTARY}]}
    source = CountingSource(
        {
            "app": {
                "1.0": d(1),
                t(1, ".sig"): d(10), t(1, ".att"): d(11), t(1, ".sbom"): d(12),
                t(1): d(13),
                t(20, ".sig"): d(14),
            },
        },
        {d(13): json.dumps(index).encode()},
    )  # fmt: skip
    found = discover(source, [(image("app", "1.0"), d(1))], ["application/spdx+json"])

    assert [(str(r.ref), r.digest) for r in found.found] == [(f"{HOST}/app@{d(20)}", d(20))]
    assert [(x.source, x.reason) for x in found.left_out] == [
        (f"{HOST}/app:{t(1, '.att')}", "referrerTypes: application/vnd.dev.cosign.artifact.att.v1+json "
                                       "(cosign's type for a .att tag) is not listed"),
        (f"{HOST}/app:{t(1, '.sbom')}", "referrerTypes: application/vnd.dev.cosign.artifact.sbom.v1+json "
                                        "(cosign's type for a .sbom tag) is not listed"),
        (f"{HOST}/app:{t(1, '.sig')}", "referrerTypes: application/vnd.dev.cosign.artifact.sig.v1+json "
                                       "(cosign's type for a .sig tag) is not listed"),
        (f"{HOST}/app:{t(1)}", f"referrerTypes: this referrers index also lists {NOTARY}; "
                               "its entries of listed types are copied by digest"),
        (f"{HOST}/app@{d(21)}", f"referrerTypes: {NOTARY} is not listed"),
        (f"{HOST}/app:{t(20, '.sig')}", "referrerTypes: application/vnd.dev.cosign.artifact.sig.v1+json "
                                        "(cosign's type for a .sig tag) is not listed"),
    ]  # fmt: skip
    assert source.looked_up == [t(1)], "cosign tags left out by their name cost no lookup"
    assert source.read == [d(13)], "the index's descriptors carry artifactType: no entry is read"


def test_an_index_whose_entries_are_all_listed_is_kept_whole_and_untyped_entries_are_read() -> None:
    """The descriptors lack artifactType (go-containerregistry's fallback index): the manifest decides,
    by `artifactType`, else the config's mediaType; the signature of the SBOM is kept as well."""
    sbom = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": SPDX, "config": {}}
    sig = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"mediaType": COSIGN_SIG}}
    index = {"manifests": [{"digest": d(20)}, {"digest": d(21)}]}
    source = CountingSource(
        {"app": {"1.0": d(1), t(1): d(13), t(20, ".sig"): d(14)}},
        {d(13): json.dumps(index).encode(), d(20): json.dumps(sbom).encode(), d(21): json.dumps(sig).encode()},
    )
    found = discover(source, [(image("app", "1.0"), d(1))], [SPDX, COSIGN_SIG])

    assert [(str(r.ref), r.subject) for r in found.found] == [
        (f"{HOST}/app:{t(1)}", f"{HOST}/app@{d(1)}"),
        (f"{HOST}/app:{t(20, '.sig')}", f"{HOST}/app@{d(20)}"),
    ]
    assert found.left_out == ()
    assert sorted(source.read) == [d(13), d(20), d(21)]


def test_referrers_api_entries_are_typed_by_their_descriptor_and_a_left_out_one_is_no_subject() -> None:
    source = CountingSource({"app": {"1.0": d(1)}}, {d(32): b'{"config": {"mediaType": "application/vnd.x"}}'})
    listed = {
        d(1): [{"digest": d(30), "artifactType": SPDX}, {"digest": d(31), "artifactType": NOTARY}, {"digest": d(32)}],
        d(31): [{"digest": d(40), "artifactType": SPDX}],
    }
    source.referrers = lambda ref: (source.api_calls.append(ref.digest or ""), listed.get(ref.digest or "", []))[1]  # type: ignore[method-assign]
    found = discover(source, [(image("app", "1.0"), d(1))], [SPDX])

    assert [str(r.ref) for r in found.found] == [f"{HOST}/app@{d(30)}"]
    assert [(x.source, x.reason) for x in found.left_out] == [
        (f"{HOST}/app@{d(31)}", f"referrerTypes: {NOTARY} is not listed"),
        (f"{HOST}/app@{d(32)}", "referrerTypes: application/vnd.x is not listed"),
    ]
    assert source.api_calls == [d(1), d(30)], "the referrers of a left-out referrer are not asked for"


def test_without_referrer_types_nothing_is_read_to_type_a_referrer() -> None:
    index = {"manifests": [{"digest": d(20)}]}
    source = CountingSource(
        {"app": {"1.0": d(1), t(1): d(13), t(1, ".sig"): d(10)}}, {d(13): json.dumps(index).encode()}
    )
    found = discover(source, [(image("app", "1.0"), d(1))])
    assert [r.ref.tag for r in found.found] == [t(1), t(1, ".sig")]
    assert source.read == [d(13)]


def test_referrers_of_index_children_are_looked_for_only_when_tags_name_subjects_not_reached() -> None:
    """cosign sign --recursive: `sha256-<child>.sig` for each platform of an index. The index is read
    only because such tags exist (none would cost no read), and `platforms` limits the children."""
    index = {
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"digest": d(2), "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": d(3), "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    }  # fmt: skip
    tags = {"1.0": d(1), t(1, ".sig"): d(10), t(2, ".sig"): d(11), t(3, ".sig"): d(12)}
    manifests = {d(1): json.dumps(index).encode()}

    every = CountingSource({"app": tags}, manifests)
    found = discover(every, [(image("app", "1.0"), d(1))])
    assert [(r.ref.tag, r.subject) for r in found.found] == [
        (t(1, ".sig"), f"{HOST}/app@{d(1)}"),
        (t(2, ".sig"), f"{HOST}/app@{d(2)}"),
        (t(3, ".sig"), f"{HOST}/app@{d(3)}"),
    ]
    assert every.read == [d(1)]

    arm = CountingSource({"app": tags}, manifests)
    found = discover(arm, [(image("app", "1.0"), d(1))], platforms=("linux/arm64",))
    assert [r.ref.tag for r in found.found] == [t(1, ".sig"), t(3, ".sig")]

    none = CountingSource({"app": tags}, manifests)
    assert [r.ref.tag for r in discover(none, [(image("app", "1.0"), d(1))], platforms=()).found] == [t(1, ".sig")]
    assert none.read == []

    signed_index_only = CountingSource({"app": {"1.0": d(1), t(1, ".sig"): d(10)}}, manifests)
    assert [r.ref.tag for r in discover(signed_index_only, [(image("app", "1.0"), d(1))]).found] == [t(1, ".sig")]
    assert signed_index_only.read == [], "no tag names a subject not reached: nothing is read"
