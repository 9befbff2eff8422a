"""Tag filter logic (ecr_transfer.tagfilter): versions, ranges, the four filters and their reasons."""

from __future__ import annotations

import pytest

from ecr_transfer.errors import ConfigError
from ecr_transfer.settings import from_mapping, load_env
from ecr_transfer.tagfilter import TagFilters, VersionRange, apply, parse_version, split_patterns

BASE = {"sourceType": "Public", "srcImageList": "nginx", "destType": "Registry", "destRegistry": "127.0.0.1:5001"}
TAGS = [
    "latest", "stable", "1.24.0", "1.25.0", "v1.25.3", "1.25", "1.26.0-rc.1", "1.26.0", "1.27.1-alpine",
    "2.0.0", "1.9", "main-3f2a9c1", "1.2.3.4", "01.2.3",
]  # fmt: skip


@pytest.mark.parametrize(
    ("tag", "version"),
    [
        ("1.2.3", "1.2.3"),
        ("v1.2.3", "1.2.3"),
        ("V2", "2.0.0"),
        ("1.2", "1.2.0"),
        ("1.2.3-rc.1", "1.2.3-rc.1"),
        ("1.25-alpine", "1.25.0-alpine"),
        ("latest", None),
        ("1.2.3.4", None),
        ("01.2.3", None),
        ("1.2.3-", None),
        ("v", None),
        ("sha256-abc", None),
    ],
)
def test_which_tags_are_versions(tag: str, version: str | None) -> None:
    parsed = parse_version(tag)
    assert (str(parsed) if parsed else None) == version


def test_range_all_comparators_must_hold() -> None:
    wanted = VersionRange.parse(">=1.25.0 <2")
    kept = [t for t in ["1.24.9", "1.25.0", "v1.99.99", "2.0.0", "1.25", "2"] if wanted.contains(parse_version(t))]  # type: ignore[arg-type]
    assert kept == ["1.25.0", "v1.99.99", "1.25"]


def test_range_alternatives_spaces_and_bare_versions() -> None:
    wanted = VersionRange.parse("  >= 1.2  < 1.3 ||  2.0.1 ||>3 ")
    assert wanted.text == ">= 1.2 < 1.3 || 2.0.1 ||>3"
    assert [t for t in ["1.2.9", "1.3.0", "2.0.1", "2.0.2", "3.0.1"] if wanted.contains(parse_version(t))] == [  # type: ignore[arg-type]
        "1.2.9",
        "2.0.1",
        "3.0.1",
    ]


def test_prereleases_only_when_the_range_names_one() -> None:
    rc = parse_version("1.26.0-rc.1")
    assert rc is not None
    assert not VersionRange.parse(">=1.25.0 <2").contains(rc)
    assert VersionRange.parse(">=1.26.0-rc.0 <2").contains(rc)
    assert not VersionRange.parse(">=1.26.0-rc.2 <2").contains(rc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty version range"),
        (">=1.2 ||", "empty alternative in '>=1.2 ||'"),
        (">=one", "'one' is not a version (expected 1.2.3, v1.2 or 1.2.3-rc.1)"),
        ("^1.2", "'^1.2' is not a version (expected 1.2.3, v1.2 or 1.2.3-rc.1)"),
        (">=1.2 <", "cannot read '<' (expected a comparator such as >=1.2.0)"),
        ("=>1.2", "cannot read '=>1.2' (expected a comparator such as >=1.2.0)"),
    ],
)
def test_a_bad_version_range_is_refused_with_its_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        VersionRange.parse(text)
    assert str(info.value) == message


def test_include_then_exclude_full_match() -> None:
    result = apply(TagFilters(include=(r"1\.2[56].*", "stable"), exclude=(r".*-rc.*",)), TAGS)
    assert result.kept == ("stable", "1.25.0", "1.25", "1.26.0")
    assert [s.key for s in result.steps] == ["tagInclude", "tagExclude"]
    assert [s.kept for s in result.steps] == [5, 4]
    assert dict(result.dropped)["v1.25.3"] == r"tagInclude: matches none of '1\\.2[56].*', 'stable'"
    assert dict(result.dropped)["1.26.0-rc.1"] == "tagExclude: matches '.*-rc.*'"
    # Full match: `1.2` does not match `1.25`.
    assert apply(TagFilters(include=(r"1\.2",)), ["1.25", "1.2"]).kept == ("1.2",)


def test_semver_drops_non_versions_and_prereleases_with_reasons() -> None:
    result = apply(TagFilters(semver=">=1.25.0 <2"), TAGS)
    assert result.kept == ("1.25.0", "v1.25.3", "1.25", "1.26.0")
    reasons = dict(result.dropped)
    assert reasons["latest"] == "tagSemver: not a version"
    assert reasons["1.2.3.4"] == "tagSemver: not a version"
    assert reasons["1.24.0"] == "tagSemver: 1.24.0 is outside '>=1.25.0 <2'"
    assert reasons["2.0.0"] == "tagSemver: 2.0.0 is outside '>=1.25.0 <2'"
    assert reasons["1.27.1-alpine"] == "tagSemver: 1.27.1-alpine is a pre-release and '>=1.25.0 <2' names none"
    assert len(result.kept) + len(result.dropped) == len(TAGS)


def test_latest_by_version_precedence_then_push_time_then_name() -> None:
    result = apply(TagFilters(latest=3), TAGS)
    assert set(result.kept) == {"2.0.0", "1.27.1-alpine", "1.26.0"}
    assert dict(result.dropped)["1.26.0-rc.1"] == "tagLatest: not among the newest 3"
    assert result.kept == tuple(t for t in TAGS if t in {"2.0.0", "1.27.1-alpine", "1.26.0"})  # source order kept

    names = ["main-a", "main-c", "main-b", "dev"]
    assert set(apply(TagFilters(latest=2), names).kept) == {"main-c", "main-b"}  # by name, descending
    pushed = {"main-a": 300.0, "main-c": 100.0, "main-b": 200.0}
    assert set(apply(TagFilters(latest=2), names, pushed).kept) == {"main-a", "main-b"}
    # Versions outrank non-versions, whatever their push times.
    assert apply(TagFilters(latest=1), ["nightly", "0.1"], {"nightly": 999.0, "0.1": 1.0}).kept == ("0.1",)


def test_every_filter_in_order_with_counts() -> None:
    filters = TagFilters(include=(r"v?[0-9].*",), exclude=(r"1\.9",), semver=">=1.0 <3", latest=2)
    result = apply(filters, TAGS)
    assert result.kept == ("1.26.0", "2.0.0")
    assert [(s.key, s.kept) for s in result.steps] == [
        ("tagInclude", 11),
        ("tagExclude", 10),
        ("tagSemver", 6),
        ("tagLatest", 2),
    ]
    assert result.listed == len(TAGS)


def test_no_filters_keep_everything() -> None:
    result = apply(TagFilters(), TAGS)
    assert result.kept == tuple(TAGS) and result.dropped == () and result.steps == ()


@pytest.mark.parametrize(
    ("value", "patterns"),
    [
        (r"1\..*, stable", (r"1\..*", "stable")),
        (r"[0-9]{1,3}\.[0-9]+,latest", (r"[0-9]{1,3}\.[0-9]+", "latest")),
        (r'["a,b", "c"]', ("a,b", "c")),
        ([r"(a|b),c", "d"], ("(a|b),c", "d")),
        (r"a\,b", (r"a\,b",)),
    ],
)
def test_pattern_lists_from_text(value: object, patterns: tuple[str, ...]) -> None:
    assert split_patterns(value) == patterns


def test_settings_keys_and_environment_names() -> None:
    settings = from_mapping(
        {**BASE, "tagInclude": [r"1\..*"], "tagExclude": r".*-rc.*", "tagSemver": ">=1.0  <2", "tagLatest": "5"}
    )
    assert settings.tag_filters == TagFilters(include=(r"1\..*",), exclude=(r".*-rc.*",), semver=">=1.0 <2", latest=5)
    env = {
        "SOURCE_TYPE": "Public",
        "SRC_IMAGE_LIST": "nginx:ALL_TAGS",
        "DEST_TYPE": "Registry",
        "DEST_REGISTRY": "127.0.0.1:5001",
        "TAG_INCLUDE": r"[0-9]{1,2}\.[0-9]+.*,stable",
        "TAG_EXCLUDE": "",
        "TAG_SEMVER": ">=1.25.0 <2",
        "TAG_LATEST": "3",
    }
    assert load_env(env).tag_filters == TagFilters(
        include=(r"[0-9]{1,2}\.[0-9]+.*", "stable"), semver=">=1.25.0 <2", latest=3
    )
    assert not from_mapping(BASE).tag_filters.active


def test_bad_filters_are_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        from_mapping({**BASE, "tagInclude": ["ok", "x("], "tagSemver": ">=1.x", "tagLatest": -1, "tagExclude": 3})
    assert info.value.problems == [
        "tagInclude: invalid regular expression 'x(': missing ), unterminated subpattern at position 1",
        "tagSemver: '1.x' is not a version (expected 1.2.3, v1.2 or 1.2.3-rc.1)",
        "tagLatest: must be a whole number of at least 1; got -1",
        "tagExclude: expected a list of regular expressions, got int",
    ]
