"""EcrCatalog: bulk listings with real pagination (botocore Stubber), repository creation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from ecr_transfer.ecr.catalog import EcrCatalog
from ecr_transfer.ecr.pacing import EcrPacing
from ecr_transfer.errors import ConfigError, PermanentError, TransientError
from ecr_transfer.references import ImageRef
from ecr_transfer.settings import RepositorySettings

ACCOUNT = "123456789012"
HOST = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
PUSHED = datetime(2026, 1, 1, tzinfo=UTC)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(n: int, *tags: str, repo: str = "repo") -> dict[str, Any]:
    detail: dict[str, Any] = {
        "registryId": ACCOUNT, "repositoryName": repo, "imageDigest": digest(n), "imagePushedAt": PUSHED,
    }  # fmt: skip
    if tags:
        detail["imageTags"] = list(tags)
    return detail


def ref(repository: str, tag: str | None = None, digest_: str | None = None) -> ImageRef:
    return ImageRef(HOST, repository, repository, tag=tag, digest=digest_)


@pytest.fixture
def client() -> Any:
    # No retries: each stubbed error is the final answer.
    return boto3.client(
        "ecr",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def catalog(client: Any, **kwargs: Any) -> EcrCatalog:
    return EcrCatalog(client, registry=HOST, registry_id=ACCOUNT, concurrency=1, **kwargs)


def expect_images(stub: Stubber, repo: str, pages: list[list[dict[str, Any]]], status: str = "TAGGED") -> None:
    for n, page in enumerate(pages):
        params: dict[str, Any] = {
            "registryId": ACCOUNT, "repositoryName": repo, "filter": {"tagStatus": status}, "maxResults": 1000,
        }  # fmt: skip
        if n:
            params["nextToken"] = f"{repo}-{n}"
        response: dict[str, Any] = {"imageDetails": page}
        if n < len(pages) - 1:
            response["nextToken"] = f"{repo}-{n + 1}"
        stub.add_response("describe_images", response, params)


def expect_create(stub: Stubber, name: str, **arguments: Any) -> None:
    """CreateRepository of `name` with exactly these arguments (defaults: mutable, no scan, AES256)."""
    defaults = {
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": False},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    }
    expected = {"registryId": ACCOUNT, "repositoryName": name, **defaults, **arguments}
    stub.add_response("create_repository", {"repository": {"repositoryName": name}}, expected)


def test_all_images_follows_every_page_and_answers_digests_from_the_listing(client: Any, stub: Stubber) -> None:
    repos_page = [{"repositoryName": n, "registryId": ACCOUNT} for n in ("aa", "bb")]
    stub.add_response(
        "describe_repositories",
        {"repositories": repos_page, "nextToken": "r-1"},
        {"registryId": ACCOUNT, "maxResults": 1000},
    )
    stub.add_response(
        "describe_repositories",
        {"repositories": [{"repositoryName": "cc", "registryId": ACCOUNT}]},
        {"registryId": ACCOUNT, "maxResults": 1000, "nextToken": "r-1"},
    )
    expect_images(stub, "aa", [[image(1, "1.0", "latest"), image(2, "0.9")], [image(3, "0.8")], [image(4, "0.7")]])
    expect_images(stub, "bb", [[]])
    expect_images(stub, "cc", [[image(5, "v1")], [image(6, "v2")]])
    cat = catalog(client)

    images = cat.all_images()

    assert [str(i) for i in images] == [
        f"{HOST}/aa:0.7", f"{HOST}/aa:0.8", f"{HOST}/aa:0.9", f"{HOST}/aa:1.0", f"{HOST}/aa:latest",
        f"{HOST}/cc:v1", f"{HOST}/cc:v2",
    ]  # fmt: skip
    # No further API call: a stubbed client raises on any call it was not told about.
    assert cat.digests(images) == [digest(4), digest(3), digest(2), digest(1), digest(1), digest(5), digest(6)]


def test_all_tags_lists_once_and_missing_repository_is_clear(client: Any, stub: Stubber) -> None:
    expect_images(stub, "lib", [[image(1, "b", "a")], [image(2, "c")]])
    stub.add_client_error(
        "describe_images", "RepositoryNotFoundException", "The repository with name 'gone' does not exist"
    )
    cat = catalog(client)
    assert cat.tags(ref("lib")) == ["a", "b", "c"]
    assert cat.digests([ref("lib", "c"), ref("lib", "a")]) == [digest(2), digest(1)]
    with pytest.raises(PermanentError, match=f"repository gone does not exist in {HOST}"):
        cat.tags(ref("gone"))


def test_destination_digests_one_listing_per_repository_single_ref_is_fresh(client: Any, stub: Stubber) -> None:
    expect_images(stub, "web", [[image(1, "1")], [image(2, "2")]])
    stub.add_client_error("describe_images", "RepositoryNotFoundException", "no such repository")
    stub.add_response(
        "describe_images",
        {"imageDetails": [image(9, "2", repo="web")]},
        {"registryId": ACCOUNT, "repositoryName": "web", "imageIds": [{"imageTag": "2"}]},
    )
    stub.add_client_error("describe_images", "ImageNotFoundException", "no such image")
    cat = catalog(client)

    planned = cat.digests([ref("web", "1"), ref("web", "2"), ref("web", "3"), ref("new", "1")])
    assert planned == [digest(1), digest(2), None, None]
    # The copier's verification after a push: never from the (now stale) listing.
    assert cat.digests([ref("web", "2")]) == [digest(9)]
    assert cat.digests([ref("web", "4")]) == [None]


def test_throttling_that_outlasts_retries_is_transient(client: Any, stub: Stubber) -> None:
    stub.add_client_error("describe_images", "ThrottlingException", "Rate exceeded", http_status_code=400)
    stub.add_client_error("describe_images", "AccessDeniedException", "not authorized", http_status_code=403)
    cat = catalog(client)
    (throttled,) = cat.digests([ref("web", "1")])
    assert isinstance(throttled, TransientError)
    assert str(throttled) == f"cannot look up {HOST}/web:1: ThrottlingException: Rate exceeded"
    (denied,) = cat.digests([ref("web", "1")])
    assert isinstance(denied, PermanentError) and not isinstance(denied, TransientError)


def test_listing_failure_for_srclist_all_is_a_configuration_error(client: Any, stub: Stubber) -> None:
    stub.add_client_error("describe_repositories", "AccessDeniedException", "User: x is not authorized")
    with pytest.raises(ConfigError, match=f"cannot list the repositories of {HOST}: AccessDeniedException: User: x"):
        catalog(client).all_images()


def test_prepare_creates_with_settings_and_only_when_missing(client: Any, stub: Stubber) -> None:
    settings = RepositorySettings(
        tag_mutability="IMMUTABLE", scan_on_push=True, encryption="KMS", kms_key="alias/ecr", tags={"b": "2", "a": "1"}
    )
    expect_images(stub, "known", [[image(1, "1")]])
    expect_create(
        stub,
        "new",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": "alias/ecr"},
        tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}],
    )
    stub.add_client_error("create_repository", "RepositoryAlreadyExistsException", "exists")  # lost a race: fine
    cat = catalog(client, repository_settings=settings)
    cat.digests([ref("known", "1"), ref("known", "2")])
    cat.prepare(["known"])  # listed by the plan: exists, no call
    cat.prepare(["new"])
    cat.prepare(["new"])  # already created by us: no call
    cat.prepare(["raced"])


def test_prepare_reports_creation_errors(client: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "create_repository",
        "AccessDeniedException",
        "User: arn:aws:sts::123456789012:assumed-role/copier is not authorized to perform: ecr:CreateRepository",
        http_status_code=403,
    )
    with pytest.raises(PermanentError) as raised:
        catalog(client).prepare(["web"])
    assert str(raised.value) == (
        f"cannot create repository web in {HOST}: AccessDeniedException: User: "
        "arn:aws:sts::123456789012:assumed-role/copier is not authorized to perform: ecr:CreateRepository"
    )


def test_aes256_repository_has_no_kms_key(client: Any, stub: Stubber) -> None:
    expect_create(stub, "plain")
    catalog(client).prepare(["plain"])


def test_calls_are_paced(client: Any) -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacing = EcrPacing({"DescribeImages": 2.0}, clock=lambda: clock[0], sleep=sleep)
    cat = catalog(client, pacing=pacing)  # pacing hooks in before the Stubber answers
    with Stubber(client) as stub:
        for _ in range(4):
            stub.add_response("describe_images", {"imageDetails": []})
        for n in range(4):
            cat.digests([ref("web", str(n))])
    assert slept == [0.5, 0.5]  # a burst of 2, then 2 per second
    assert pacing.waited == {"DescribeImages": 1.0}


def test_src_list_all_filters_each_repository_latest_by_push_time(client: Any, stub: Stubber) -> None:
    """tagLatest ranks tags that are not versions by ECR's imagePushedAt, from the listing already made."""
    from ecr_transfer.selection import select
    from ecr_transfer.settings import from_mapping

    def pushed(n: int, day: int, *tags: str, repo: str) -> dict[str, Any]:
        return {**image(n, *tags, repo=repo), "imagePushedAt": datetime(2026, 1, day, tzinfo=UTC)}

    stub.add_response(
        "describe_repositories",
        {"repositories": [{"repositoryName": n, "registryId": ACCOUNT} for n in ("builds", "lib")]},
        {"registryId": ACCOUNT, "maxResults": 1000},
    )
    # Names and push order disagree: main-a is the newest push, main-c the oldest.
    expect_images(stub, "builds", [[pushed(1, 9, "main-a", repo="builds"), pushed(2, 1, "main-c", repo="builds")],
                                   [pushed(3, 5, "main-b", "dev", repo="builds")]])  # fmt: skip
    expect_images(stub, "lib", [[pushed(4, 1, "2.0.0", repo="lib"), pushed(5, 9, "1.9.9", "latest", repo="lib")]])
    settings = from_mapping(
        {"sourceType": "Amazon_ECR", "srcList": "ALL", "srcRegion": "us-east-1", "destType": "Registry",
         "destRegistry": "127.0.0.1:5000", "tagExclude": ["dev"], "tagLatest": 2}
    )  # fmt: skip

    selection = select(settings, catalog(client))

    assert [str(i) for i in selection.images] == [f"{HOST}/builds:main-a", f"{HOST}/builds:main-b",
                                                  f"{HOST}/lib:1.9.9", f"{HOST}/lib:2.0.0"]  # fmt: skip
    assert [(e.entry, e.listed, [(s.key, s.kept) for s in e.steps]) for e in selection.entries] == [
        (f"{HOST}/builds:ALL_TAGS", 4, [("tagExclude", 3), ("tagLatest", 2)]),
        (f"{HOST}/lib:ALL_TAGS", 3, [("tagExclude", 3), ("tagLatest", 2)]),
    ]
    assert [(d.source, d.reason) for d in selection.filtered] == [
        (f"{HOST}/builds:dev", "tagExclude: matches 'dev'"),
        (f"{HOST}/builds:main-c", "tagLatest: not among the newest 2"),
        (f"{HOST}/lib:latest", "tagLatest: not among the newest 2"),  # pushed last, but not a version
    ]


def test_image_sizes_come_from_the_listing_without_a_request_of_their_own(client: Any, stub: Stubber) -> None:
    """The fast path bounds a push run's bytes by ECR's imageSizeInBytes (cloud.fast_copy)."""
    sized = {**image(1, "v1"), "imageSizeInBytes": 52_000_000}
    expect_images(stub, "repo", [[sized, image(2, "v2")]])
    cat = catalog(client)
    assert cat.image_size(ref("repo", "v1")) is None  # not listed yet: no lookup for a size alone

    assert cat.tags(ref("repo")) == ["v1", "v2"]
    assert cat.image_size(ref("repo", "v1")) == 52_000_000
    assert cat.image_size(ref("repo", digest_=digest(1))) == 52_000_000
    assert cat.image_size(ref("repo", "v2")) is None  # ECR gave no size
    assert cat.image_size(ImageRef("quay.io", "repo", "repo", tag="v1")) is None  # another registry
