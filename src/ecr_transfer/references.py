"""Image references and the selected image list.

Follows the distribution reference grammar (the one docker, podman and skopeo use), so that
`host:port/path/repo:tag@sha256:...` and Docker Hub short names mean what users expect.
The old plugin split on ':' and lost both registry ports and digests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ecr_transfer.errors import ConfigError

ALL_TAGS = "ALL_TAGS"
DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z|sha512:[a-f0-9]{128}\Z")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?))*"
    r"(?::[0-9]{1,5})?\Z|\[[0-9A-Fa-f:]+\](?::[0-9]{1,5})?\Z"
)
MAX_REPOSITORY_LENGTH = 255


@dataclass(frozen=True, slots=True)
class ImageRef:
    """One image (or, with `all_tags`, every tag of one repository) at one registry."""

    registry: str
    """Registry host[:port]; `docker.io` for Docker Hub."""
    repository: str
    """Canonical repository path at that registry (`library/nginx` for `nginx`)."""
    path: str
    """The repository path as the user wrote it, without host (`nginx`): the destination name."""
    tag: str | None = None
    digest: str | None = None
    all_tags: bool = False

    @property
    def reference(self) -> str:
        """The tag or digest that the manifest endpoint takes (digest wins when both are set)."""
        if self.digest:
            return self.digest
        if self.tag:
            return self.tag
        raise ValueError(f"{self} names no single image")

    def with_tag(self, tag: str) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.path, tag=tag)

    def with_digest(self, digest: str | None) -> ImageRef:
        return ImageRef(self.registry, self.repository, self.path, tag=self.tag, digest=digest)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.all_tags:
            return f"{text}:{ALL_TAGS}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_reference(text: str, default_registry: str | None = None) -> ImageRef:
    """Parse one reference; raise ValueError with a reason a user can act on.

    `default_registry` is where a reference without a host lives: None means Docker Hub (with its
    `library/` rule for one-component names); an ECR source passes its own registry host.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty image reference")
    if any(ch.isspace() for ch in text):
        raise ValueError("image reference contains white space")

    name, digest = text, None
    if "@" in text:
        name, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise ValueError(f"invalid digest {digest!r} (expected sha256: and 64 lowercase hex digits)")

    tag: str | None = None
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name, tag = name[:colon], name[colon + 1 :]
        if tag != ALL_TAGS and not _TAG.match(tag):
            if len(tag) > 128:
                raise ValueError(f"tag is {len(tag)} characters long; the limit is 128")
            raise ValueError(f"invalid tag {tag!r}")

    if not name:
        raise ValueError("missing repository name")
    parts = name.split("/")
    registry: str | None = None
    if len(parts) > 1 and _looks_like_host(parts[0]):
        registry = parts[0]
        if not _HOST.match(registry):
            raise ValueError(f"invalid registry host {registry!r}")
        parts = parts[1:]
    path = "/".join(parts)
    for part in parts:
        if not part:
            raise ValueError(f"empty path component in {name!r}")
        if not _COMPONENT.match(part):
            hint = " (repository names must be lowercase)" if part.lower() != part else ""
            raise ValueError(f"invalid repository name component {part!r}{hint}")
    if len(path) > MAX_REPOSITORY_LENGTH:
        raise ValueError(f"repository name is {len(path)} characters long; the limit is {MAX_REPOSITORY_LENGTH}")

    if registry is None:
        registry = default_registry or DOCKER_HUB
        hub = default_registry is None
    else:
        hub = registry.lower() in _DOCKER_HUB_ALIASES
        if hub:
            registry = DOCKER_HUB
    repository = f"library/{path}" if hub and "/" not in path else path

    if tag == ALL_TAGS:
        if digest:
            raise ValueError(f"{ALL_TAGS} cannot be combined with a digest")
        return ImageRef(registry, repository, path, all_tags=True)
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(registry, repository, path, tag=tag, digest=digest)


def split_image_list(text: str) -> list[tuple[int, str]]:
    """Entries of a selected list with their 1-based line numbers.

    Newlines and commas both separate; blank entries and `#` comments are ignored.
    """
    entries: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0]
        for item in line.split(","):
            item = item.strip()
            if item:
                entries.append((lineno, item))
    return entries


def parse_image_list(text: str, default_registry: str | None = None, source: str = "srcImageList") -> list[ImageRef]:
    """Parse a whole selected list, reporting every bad entry at once (with line numbers)."""
    refs: list[ImageRef] = []
    seen: set[ImageRef] = set()
    problems: list[str] = []
    for lineno, item in split_image_list(text):
        try:
            ref = parse_reference(item, default_registry)
        except ValueError as exc:
            problems.append(f"line {lineno}: {item!r}: {exc}")
            continue
        if ref not in seen:
            seen.add(ref)
            refs.append(ref)
    if problems:
        raise ConfigError(problems, source=source)
    if not refs:
        raise ConfigError("the selected image list is empty (srcList is SELECTED)", source=source)
    return refs


def entry_lines(text: str, default_registry: str | None = None) -> dict[ImageRef, int]:
    """Each valid entry of a selected list -> the line it is first written on (for error messages)."""
    lines: dict[ImageRef, int] = {}
    for lineno, item in split_image_list(text):
        try:
            lines.setdefault(parse_reference(item, default_registry), lineno)
        except ValueError:
            continue
    return lines
