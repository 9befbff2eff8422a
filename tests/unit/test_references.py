from __future__ import annotations

import pytest

from ecr_transfer.errors import ConfigError
from ecr_transfer.mapping import target_ref, target_repository
from ecr_transfer.references import ImageRef, parse_image_list, parse_reference, split_image_list

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "path", "tag", "digest"),
    [
        ("nginx", "docker.io", "library/nginx", "nginx", "latest", None),
        ("nginx:1.25", "docker.io", "library/nginx", "nginx", "1.25", None),
        ("library/nginx:1.25", "docker.io", "library/nginx", "library/nginx", "1.25", None),
        ("bitnami/redis", "docker.io", "bitnami/redis", "bitnami/redis", "latest", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "nginx", "latest", None),
        ("index.docker.io/library/nginx:x", "docker.io", "library/nginx", "library/nginx", "x", None),
        ("quay.io/coreos/etcd:v3.5.0", "quay.io", "coreos/etcd", "coreos/etcd", "v3.5.0", None),
        ("127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app", "team/app", "1.0", None),
        ("localhost/app", "localhost", "app", "app", "latest", None),
        (f"repo@{D}", "docker.io", "library/repo", "repo", None, D),
        (f"ghcr.io/o/r:v1@{D}", "ghcr.io", "o/r", "o/r", "v1", D),
        ("host:5000/a/b/c:tag_1.2-x", "host:5000", "a/b/c", "a/b/c", "tag_1.2-x", None),
    ],
)
def test_references_parse_into_registry_repository_tag_and_digest(
    text: str, registry: str, repository: str, path: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.path, ref.tag, ref.digest) == (registry, repository, path, tag, digest)


def test_ecr_default_registry_has_no_library_prefix() -> None:
    ref = parse_reference("team/app:1", "123456789012.dkr.ecr.us-east-1.amazonaws.com")
    assert ref.registry == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert ref.repository == "team/app"
    assert parse_reference("app", "r.example").repository == "app"


def test_all_tags_means_every_tag_and_cannot_be_pinned_to_a_digest() -> None:
    ref = parse_reference("quay.io/coreos/etcd:ALL_TAGS")
    assert ref.all_tags and ref.tag is None
    assert str(ref) == "quay.io/coreos/etcd:ALL_TAGS"
    with pytest.raises(ValueError, match="cannot be combined with a digest"):
        parse_reference(f"a:ALL_TAGS@{D}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Nginx", "invalid repository name component 'Nginx' (repository names must be lowercase)"),
        ("a//b", "empty path component in 'a//b'"),
        ("a:" + "t" * 129, "tag is 129 characters long; the limit is 128"),
        ("a:-bad", "invalid tag '-bad'"),
        ("a@sha256:xyz", "invalid digest 'sha256:xyz' (expected sha256: and 64 lowercase hex digits)"),
        ("a b", "image reference contains white space"),
        ("quay.io/", "empty path component in 'quay.io/'"),
        ("bad_host_/x", "invalid repository name component 'bad_host_'"),
    ],
)
def test_a_bad_reference_is_refused_with_its_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_reference(text)
    assert str(info.value) == message


def test_split_list_newlines_commas_comments() -> None:
    text = "nginx, redis:7\n\n# a comment\n  quay.io/a/b:1 # trailing\n,c,\n"
    assert split_image_list(text) == [(1, "nginx"), (1, "redis:7"), (4, "quay.io/a/b:1"), (5, "c")]


def test_parse_list_reports_every_bad_entry_with_line_numbers() -> None:
    text = "nginx\nBad:1\nok:2, also bad@sha256:1\n"
    with pytest.raises(ConfigError) as info:
        parse_image_list(text)
    assert info.value.problems == [
        "line 2: 'Bad:1': invalid repository name component 'Bad' (repository names must be lowercase)",
        "line 3: 'also bad@sha256:1': image reference contains white space",
    ]
    assert str(info.value).startswith("srcImageList: line 2:")


def test_parse_list_dedupes_and_rejects_empty() -> None:
    refs = parse_image_list("nginx\nnginx:latest\ndocker.io/library/nginx")
    assert len(refs) == 2  # nginx and library/nginx map to different destination paths
    with pytest.raises(ConfigError, match="the selected image list is empty"):
        parse_image_list("# nothing\n,,\n")


@pytest.mark.parametrize(
    ("source", "prefix", "expected"),
    [
        ("nginx", "", "nginx"),
        ("library/nginx", "", "library/nginx"),
        ("quay.io/coreos/etcd", "", "coreos/etcd"),
        ("127.0.0.1:5000/team/app", "", "team/app"),
        ("nginx", "mirror", "mirror/nginx"),
        ("quay.io/coreos/etcd", "/a/b/", "a/b/coreos/etcd"),
    ],
)
def test_destination_repository_keeps_the_path_under_the_prefix(source: str, prefix: str, expected: str) -> None:
    assert target_repository(parse_reference(source), prefix) == expected


def test_target_ref_keeps_tags_and_digest_only() -> None:
    tagged = target_ref(parse_reference(f"quay.io/a/b:v1@{D}"), "dst:5000", "p")
    assert str(tagged) == "dst:5000/p/a/b:v1"
    pinned = target_ref(parse_reference(f"quay.io/a/b@{D}"), "dst:5000")
    assert str(pinned) == f"dst:5000/a/b@{D}"
    with pytest.raises(ValueError, match="is 256 characters long; the limit is 255"):
        target_ref(ImageRef("r", "x" * 250, "x" * 250, tag="t"), "d", "abcde")
