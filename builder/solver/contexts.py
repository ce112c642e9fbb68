"""The directories of the build context and of the named local contexts
(``--build-context NAME=DIR``), each with its ``.dockerignore``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from builder.buildcontexts import NamedContext
from builder.errors import ContextError
from builder.frontend.dockerignore import DockerIgnore
from builder.graph.ops import ContextSource

__all__ = ["NamedRoots", "context_root", "named_roots"]

#: The directory and ``.dockerignore`` rules of every named local context, by name.
NamedRoots = Mapping[str, tuple[Path, DockerIgnore]]


def named_roots(contexts: Mapping[str, NamedContext]) -> dict[str, tuple[Path, DockerIgnore]]:
    """The local ones of ``contexts``, each with the rules of its own ``.dockerignore``."""
    out: dict[str, tuple[Path, DockerIgnore]] = {}
    for name, named in contexts.items():
        if named.kind != "local":
            continue
        if not named.path.is_dir():
            raise ContextError(f"--build-context {name}={named.value}: not a directory")
        ignore_file = named.path / ".dockerignore"
        out[name] = (named.path, DockerIgnore.load(ignore_file if ignore_file.is_file()
                                                   else None))
    return out


def context_root(main: Path, ignore: DockerIgnore, named: NamedRoots, source: ContextSource
                 ) -> tuple[Path, DockerIgnore]:
    """The directory and ignore rules ``source`` reads: the build context's, or a named
    local context's."""
    if source.name == ContextSource().name:
        return main, ignore
    return named[source.name]
