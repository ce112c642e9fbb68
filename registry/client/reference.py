"""Image references as docker parses and normalizes them.

``debian`` is ``docker.io/library/debian:latest``; ``library/debian`` and
``index.docker.io/library/debian`` name the same repository; a first component holding a
``.`` or a ``:``, or ``localhost``, is a registry (``127.0.0.1:5000/team/app:v1``); a
reference may carry a tag, a digest (``@sha256:…``) or both (the digest wins when pulling).
The grammar is docker's (``distribution/reference``): lowercase path components separated by
``.``, ``_``, ``__`` or dashes; tags of up to 128 word characters, dots and dashes; at most
255 characters for the whole name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from layerstore.digest import Digest
from layerstore.errors import InvalidArgument
from registry.client.errors import InvalidReference

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
OFFICIAL_NAMESPACE = "library"
#: Where the registry API of docker.io is served.
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
NAME_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")


def normalize_registry(host: str) -> str:
    """``docker.io`` for the names docker gives Docker Hub; other hosts unchanged."""
    return DEFAULT_REGISTRY if host.lower() in _DOCKER_HUB_ALIASES else host


@dataclass(frozen=True)
class Reference:
    """A normalized image reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    def __post_init__(self) -> None:
        if not _DOMAIN_RE.match(self.registry):
            raise InvalidReference(f"invalid registry {self.registry!r} in an image reference")
        if not _PATH_RE.match(self.repository):
            raise InvalidReference(f"invalid repository name {self.repository!r}: lowercase "
                                   "letters, digits and . _ - separators, '/' between parts")
        if len(self.name) > NAME_MAX:
            raise InvalidReference(f"repository name {self.name!r} is longer than {NAME_MAX} "
                                   "characters")
        if self.tag is not None and not _TAG_RE.match(self.tag):
            raise InvalidReference(f"invalid tag {self.tag!r} for {self.name}: up to 128 "
                                   "letters, digits, '_', '.' and '-', not starting with "
                                   "'.' or '-'")

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def is_docker_hub(self) -> bool:
        """Whether the image lives on Docker Hub (``docker.io``)."""
        return self.registry == DEFAULT_REGISTRY

    @property
    def api_host(self) -> str:
        """The host serving the registry API (``registry-1.docker.io`` for docker.io)."""
        return DOCKER_HUB_API if self.is_docker_hub else self.registry

    @property
    def manifest_reference(self) -> str:
        """What goes after ``/manifests/``: the digest when there is one, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or DEFAULT_TAG

    def with_tag(self, tag: str | None) -> Reference:
        """The same repository with another tag (and no digest)."""
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: Digest) -> Reference:
        """The same repository at ``digest`` (the tag is kept)."""
        return replace(self, digest=digest)

    def in_repository(self, repository: str) -> Reference:
        """The same tag and digest in another repository of the same registry."""
        return replace(self, repository=repository)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag is not None else ""
        return out + (f"@{self.digest}" if self.digest is not None else "")

    def familiar_name(self) -> str:
        """The repository as docker shows it: ``debian`` for ``docker.io/library/debian``,
        ``user/app`` for ``docker.io/user/app``; others with their registry."""
        if not self.is_docker_hub:
            return self.name
        prefix = OFFICIAL_NAMESPACE + "/"
        if self.repository.startswith(prefix) and "/" not in self.repository[len(prefix):]:
            return self.repository[len(prefix):]
        return self.repository

    def familiar(self) -> str:
        """The short form docker prints (``debian:bookworm``)."""
        return self.familiar_name() + self._suffix()

    def __str__(self) -> str:
        return self.name + self._suffix()


def _split_registry(text: str) -> tuple[str, str]:
    """docker's ``splitDockerDomain``: the registry and the rest of ``text``."""
    first, sep, rest = text.partition("/")
    if not sep or (not any(c in first for c in ".:") and first != "localhost"
                   and first.lower() == first):
        registry, rest = DEFAULT_REGISTRY, text
    else:
        registry = normalize_registry(first)
    if registry == DEFAULT_REGISTRY and "/" not in rest.split("@", 1)[0]:
        rest = f"{OFFICIAL_NAMESPACE}/{rest}"
    return registry, rest


def parse_reference(text: str, *, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalize ``text`` as docker does; ``default_tag`` is given to a reference
    with neither a tag nor a digest. InvalidReference names what is wrong."""
    if not isinstance(text, str):
        raise InvalidReference(f"an image reference must be a string, not "
                               f"{type(text).__name__}")
    if not text:
        raise InvalidReference("invalid reference format: the image reference is empty")
    if _IDENTIFIER_RE.match(text):
        raise InvalidReference(f"invalid repository name ({text}): cannot specify 64-byte "
                               "hexadecimal strings")
    registry, rest = _split_registry(text)
    repository_part = rest.split("@", 1)[0].split(":", 1)[0]
    if repository_part.lower() != repository_part:
        raise InvalidReference(f"invalid reference format: repository name "
                               f"({repository_part}) must be lowercase")
    match = _REFERENCE_RE.match(f"{registry}/{rest}")
    if match is None:
        raise InvalidReference(_diagnose(text, rest))
    digest_text, tag = match.group("digest"), match.group("tag")
    digest = None
    if digest_text is not None:
        try:
            digest = Digest.parse(digest_text)
        except InvalidArgument as exc:
            raise InvalidReference(f"invalid digest in {text!r}: {exc}") from None
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, match.group("path"), tag, digest)


def _diagnose(text: str, rest: str) -> str:
    name, at, digest = rest.partition("@")
    if at and not re.match(rf"^{_DIGEST}$", digest):
        return f"invalid reference format: {text!r} has a malformed digest {digest!r}"
    colon = name.rfind(":")
    if colon != -1 and "/" not in name[colon:]:
        tag = name[colon + 1:]
        if not _TAG_RE.match(tag):
            return (f"invalid reference format: {text!r} has a malformed tag {tag!r} (up to "
                    "128 letters, digits, '_', '.' and '-', not starting with '.' or '-')")
        name = name[:colon]
    for part in name.split("/"):
        if not part:
            return f"invalid reference format: {text!r} has an empty path component"
        if not re.match(rf"^{_COMPONENT}$", part):
            return (f"invalid reference format: {text!r}: path component {part!r} may hold "
                    "only lowercase letters, digits and single . _ or - separators")
    return f"invalid reference format: {text!r}"


__all__ = ["DEFAULT_REGISTRY", "DEFAULT_TAG", "DOCKER_HUB_API", "Reference",
           "normalize_registry", "parse_reference"]
