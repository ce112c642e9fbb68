"""Copying directory trees for RUN mounts: full copies, context views filtered by
``.dockerignore``, and removal. Copies are made by :mod:`layerstore.treecopy`."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from builder.errors import BuildError
from builder.frontend.dockerignore import DockerIgnore
from layerstore import treecopy


def filtered_tree(source: Path, dest: Path, rel: str, ignore: DockerIgnore, *,
                   link: bool) -> None:
    """Rebuild ``source`` (``rel`` inside the context) at ``dest`` without what ``ignore``
    excludes: files hard-linked when ``link`` (and on the same filesystem), copied otherwise."""
    def skip(child: str, is_dir: bool) -> bool:
        child_rel = f"{rel}/{child}" if rel else child
        return ignore.excluded(child_rel) and not (is_dir and ignore.must_descend(child_rel))

    treecopy.copy_tree(source, dest, link=link, skip=skip)


def copy_tree(source: Path, dest: Path, contents: bool = False) -> None:
    """Copy like ``cp -a`` (owners, modes, times, links, xattrs): ``source`` to the new
    ``dest``, or with ``contents`` what the directory ``source`` holds into ``dest``."""
    try:
        treecopy.copy_tree(source, dest, contents=contents)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise BuildError(f"cannot copy {str(source)!r}: {exc.strerror or exc}{where}") from None


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it (root ignores the modes inside)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
