"""Tag filters: which of an expanded repository's tags are transferred, and why the others are not.

Four settings, applied in this order to the tags of `repo:ALL_TAGS` and `srcList: ALL` (never to
a tag written in the list):

- `tagInclude`: regular expressions; a tag is kept only when one of them matches it in full.
- `tagExclude`: regular expressions; a tag one of them matches in full is dropped.
- `tagSemver`: a version range (`>=1.25.0 <2`, alternatives with `||`); tags that are not
  versions are dropped, pre-releases unless the range names one.
- `tagLatest`: the newest N of what is left, by version precedence; tags that are not versions
  come after every version, newest push first where the source reports push times (ECR), else
  by name, descending.

Versions are semantic versions as the `semver` library reads them, with two relaxations users'
tags need: a leading `v` and missing minor/patch (`v1.2` is 1.2.0). `1.2.3.4` and `01.2` are not
versions. A suffix after `-` is a pre-release by semver's rules, so `1.25-alpine` is a pre-release
of 1.25.0: a range keeps it only when it names a pre-release itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from semver import Version

TAG_INCLUDE, TAG_EXCLUDE, TAG_SEMVER, TAG_LATEST = "tagInclude", "tagExclude", "tagSemver", "tagLatest"
_VERSION = re.compile(r"[vV]?(?P<core>[0-9]+(?:\.[0-9]+){0,2})(?P<rest>-[0-9A-Za-z.-]+)?\Z")
_COMPARATOR = re.compile(r"(?P<op>>=|<=|==|>|<|=)?\s*(?P<version>[^\s<>=|]+)")
_OPERATORS = {
    ">=": lambda v, b: v >= b,
    "<=": lambda v, b: v <= b,
    ">": lambda v, b: v > b,
    "<": lambda v, b: v < b,
    "=": lambda v, b: v == b,
}


def parse_version(tag: str) -> Version | None:
    """The version a tag names (`v1.2` -> 1.2.0, `1.2.3-rc.1`), or None when it names none."""
    match = _VERSION.match(tag)
    if match is None:
        return None
    # Imported when a semver filter first reads a tag: most runs have none, and it is 10-15 ms.
    from semver import Version

    try:
        return Version.parse(match["core"] + (match["rest"] or ""), optional_minor_and_patch=True)
    except ValueError:  # leading zeros (01.2), an empty pre-release identifier (1.2.3-a..b)
        return None


@dataclass(frozen=True, slots=True)
class Comparator:
    op: str
    version: Version

    def holds(self, version: Version) -> bool:
        return bool(_OPERATORS[self.op](version, self.version))


@dataclass(frozen=True, slots=True)
class VersionRange:
    """Alternatives (`||`) of comparator sets; every comparator of one set must hold."""

    text: str
    alternatives: tuple[tuple[Comparator, ...], ...]

    @property
    def names_prerelease(self) -> bool:
        return any(c.version.prerelease for alt in self.alternatives for c in alt)

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        """`>=1.25.0 <2`; raise ValueError saying which part is wrong."""
        text = " ".join(text.split())
        if not text:
            raise ValueError("empty version range")
        alternatives: list[tuple[Comparator, ...]] = []
        for part in text.split("||"):
            comparators: list[Comparator] = []
            position = 0
            part = part.strip()
            if not part:
                raise ValueError(f"empty alternative in {text!r}")
            while position < len(part):
                match = _COMPARATOR.match(part, position)
                if match is None:
                    raise ValueError(f"cannot read {part[position:]!r} (expected a comparator such as >=1.2.0)")
                version = parse_version(match["version"])
                if version is None:
                    raise ValueError(f"{match['version']!r} is not a version (expected 1.2.3, v1.2 or 1.2.3-rc.1)")
                op = match["op"] or "="
                comparators.append(Comparator("=" if op == "==" else op, version))
                position = match.end()
                while position < len(part) and part[position] == " ":
                    position += 1
            alternatives.append(tuple(comparators))
        return cls(text, tuple(alternatives))

    def contains(self, version: Version) -> bool:
        if version.prerelease and not self.names_prerelease:
            return False
        return any(all(c.holds(version) for c in alt) for alt in self.alternatives)


@dataclass(frozen=True, slots=True)
class TagFilters:
    """The four filter settings, validated; an empty TagFilters keeps every tag."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    semver: str | None = None
    latest: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude or self.semver or self.latest)


@dataclass(frozen=True, slots=True)
class FilterStep:
    """How many tags were left after one filter."""

    key: str
    kept: int


@dataclass(frozen=True, slots=True)
class Filtered:
    """What the filters did to one expanded entry's tags."""

    kept: tuple[str, ...]
    dropped: tuple[tuple[str, str], ...]
    """(tag, reason) in the order the filters dropped them."""
    listed: int
    steps: tuple[FilterStep, ...]


def split_patterns(value: Any) -> tuple[str, ...]:
    """A YAML list, a JSON array, or comma-separated text (a comma inside {}, [] or () is the regex's).

    An environment variable or stack parameter is one string; `[0-9]{1,3}` must survive it.
    """
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value if str(v) != "")
    if not isinstance(value, str):
        raise ValueError(f"expected a list of regular expressions, got {type(value).__name__}")
    text = value.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            return tuple(i for i in items if i)
    parts: list[str] = []
    current: list[str] = []
    depth, escaped = 0, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return tuple(p for p in parts if p)


def check_patterns(patterns: Sequence[str]) -> tuple[str, ...]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return tuple(patterns)


def _quoted(patterns: Sequence[str]) -> str:
    return ", ".join(repr(p) for p in patterns)


def _latest_key(tag: str, pushed: Mapping[str, float]) -> tuple[Any, ...]:
    version = parse_version(tag)
    if version is not None:
        return (2, version, tag)
    when = pushed.get(tag)
    return (1, when, tag) if when is not None else (0, tag)


def apply(filters: TagFilters, tags: Sequence[str], pushed: Mapping[str, float] | None = None) -> Filtered:
    """Run the filters over one entry's tags; `pushed` maps tag -> push time (epoch seconds) where known."""
    kept = list(tags)
    dropped: list[tuple[str, str]] = []
    steps: list[FilterStep] = []

    def keep_if(key: str, verdict: Any) -> None:
        nonlocal kept
        survivors = []
        for tag in kept:
            reason = verdict(tag)
            if reason is None:
                survivors.append(tag)
            else:
                dropped.append((tag, f"{key}: {reason}"))
        kept = survivors
        steps.append(FilterStep(key, len(kept)))

    if filters.include:
        include = [re.compile(p) for p in filters.include]
        keep_if(
            TAG_INCLUDE,
            lambda t: None if any(p.fullmatch(t) for p in include) else f"matches none of {_quoted(filters.include)}",
        )
    if filters.exclude:
        exclude = [re.compile(p) for p in filters.exclude]

        def excluded(tag: str) -> str | None:
            hit = next((p.pattern for p in exclude if p.fullmatch(tag)), None)
            return None if hit is None else f"matches {hit!r}"

        keep_if(TAG_EXCLUDE, excluded)
    if filters.semver:
        wanted = VersionRange.parse(filters.semver)

        def in_range(tag: str) -> str | None:
            version = parse_version(tag)
            if version is None:
                return "not a version"
            if version.prerelease and not wanted.names_prerelease:
                return f"{version} is a pre-release and {wanted.text!r} names none"
            return None if wanted.contains(version) else f"{version} is outside {wanted.text!r}"

        keep_if(TAG_SEMVER, in_range)
    if filters.latest:
        ranked = sorted(kept, key=lambda t: _latest_key(t, pushed or {}), reverse=True)
        newest = set(ranked[: filters.latest])
        keep_if(TAG_LATEST, lambda t: None if t in newest else f"not among the newest {filters.latest}")
    return Filtered(kept=tuple(kept), dropped=tuple(dropped), listed=len(tags), steps=tuple(steps))
