"""Named build contexts (``--build-context NAME=VALUE``), as buildx passes them to BuildKit.

A Dockerfile names them where it names a stage or an image: ``FROM NAME``,
``COPY --from=NAME`` and ``RUN --mount=from=NAME``. A named context takes the place of a
stage or an image of the same name. Its value is a local directory (``PATH``), an image
(``docker-image://REF``), an image in an OCI layout directory
(``oci-layout://PATH[:TAG|@DIGEST]``) or another stage of the same Dockerfile
(``target:STAGE``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from builder.errors import BuildError

__all__ = ["OCI_LAYOUT", "ContextKind", "NamedContext", "lookup", "parse_build_context",
           "parse_build_contexts", "split_oci_layout"]

ContextKind = Literal["local", "image", "oci-layout", "target"]

#: The scheme of an image reference that names an image in an OCI layout directory; the
#: solver's image resolver reads such references from the directory.
OCI_LAYOUT = "oci-layout://"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._/:@-]*$")
_SCHEMES = ("docker-image://", OCI_LAYOUT, "target:")
_UNSUPPORTED = ("git://", "git@", "http://", "https://", "ssh://", "input:")


@dataclass(frozen=True)
class NamedContext:
    """One ``--build-context``: its ``name``, what ``kind`` of source it is and ``value``,
    which is an absolute directory for ``local``, an image reference for ``image``, an
    ``oci-layout://DIR[:TAG|@DIGEST]`` reference with an absolute ``DIR`` for
    ``oci-layout`` and a stage name for ``target``."""

    name: str
    kind: ContextKind
    value: str

    @property
    def path(self) -> Path:
        """The directory of a ``local`` context."""
        return Path(self.value)


def parse_build_context(text: str, cwd: Path | None = None) -> NamedContext:
    """One ``--build-context NAME=VALUE`` flag; :class:`BuildError` naming the flag when it
    is malformed, its scheme is not supported or its directory is missing."""
    name, eq, value = text.partition("=")
    name = name.strip().lower()
    where = f"--build-context {text!r}"
    if not eq or not name or not value:
        raise BuildError(f"{where}: expected NAME=VALUE (a directory, docker-image://REF, "
                         "oci-layout://PATH[:TAG] or target:STAGE)")
    if not _NAME.match(name):
        raise BuildError(f"{where}: {name!r} is not a valid context name (lowercase "
                         "letters, digits and . _ - / : @)")
    if name == "context":
        raise BuildError(f"{where}: the name 'context' is the build context's own")
    base = cwd or Path.cwd()
    if value.startswith("docker-image://"):
        ref = value.removeprefix("docker-image://")
        if not ref:
            raise BuildError(f"{where}: docker-image:// needs an image reference")
        return NamedContext(name, "image", ref)
    if value.startswith(OCI_LAYOUT):
        return NamedContext(name, "oci-layout", _oci_layout(value, base, where))
    if value.startswith("target:"):
        stage = value.removeprefix("target:")
        if not stage:
            raise BuildError(f"{where}: target: needs a stage name")
        return NamedContext(name, "target", stage.lower())
    if value.startswith(_UNSUPPORTED) or re.match(r"^[a-z][a-z0-9+.-]*://", value):
        scheme = value.split("://", 1)[0] if "://" in value else value.split(":", 1)[0]
        raise BuildError(f"{where}: unsupported context source {scheme!r}; use a directory, "
                         "docker-image://, oci-layout:// or target:")
    path = (base / value).resolve()
    if not path.is_dir():
        raise BuildError(f"{where}: {value} is not a directory")
    return NamedContext(name, "local", str(path))


def parse_build_contexts(texts: Iterable[str], cwd: Path | None = None
                         ) -> dict[str, NamedContext]:
    """Every ``--build-context`` flag, by name; a name given twice is an error."""
    out: dict[str, NamedContext] = {}
    for text in texts:
        context = parse_build_context(text, cwd)
        if context.name in out:
            raise BuildError(f"--build-context {context.name!r} is given more than once")
        out[context.name] = context
    return out


def lookup(contexts: Mapping[str, NamedContext], name: str) -> NamedContext | None:
    """The named context a ``FROM``/``--from`` word refers to (names are case-insensitive,
    as stage names are)."""
    return contexts.get(name.lower()) if contexts else None


def split_oci_layout(ref: str) -> tuple[Path, str | None, str | None]:
    """The directory, tag and digest of an ``oci-layout://DIR[:TAG][@DIGEST]`` reference."""
    rest = ref.removeprefix(OCI_LAYOUT)
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
    tag = None
    head, colon, tail = rest.rpartition(":")
    if colon and "/" not in tail and head:
        rest, tag = head, tail
    return Path(rest), tag, digest


def _oci_layout(value: str, base: Path, where: str) -> str:
    directory, tag, digest = split_oci_layout(value)
    if not str(directory):
        raise BuildError(f"{where}: oci-layout:// needs a directory")
    path = (base / directory).resolve()
    if not (path / "index.json").is_file() or not (path / "oci-layout").is_file():
        raise BuildError(f"{where}: {directory} is not an OCI image layout directory "
                         "(no index.json / oci-layout file)")
    if digest is not None and not re.match(r"^sha256:[0-9a-f]{64}$", digest):
        raise BuildError(f"{where}: {digest!r} is not a sha256 digest")
    return OCI_LAYOUT + str(path) + (f":{tag}" if tag else "") + \
        (f"@{digest}" if digest else "")

