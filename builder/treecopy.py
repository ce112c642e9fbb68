"""Copying directory trees for RUN mounts: ``cp -a`` copies, context views filtered by
``.dockerignore``, and removal."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

from builder.errors import BuildError
from builder.frontend.dockerignore import DockerIgnore


def filtered_tree(source: Path, dest: Path, rel: str, ignore: DockerIgnore, *,
                   link: bool) -> None:
    """Rebuild ``source`` (``rel`` inside the context) at ``dest`` without what ``ignore``
    excludes: files hard-linked when ``link`` (and on the same filesystem), copied otherwise."""
    st = os.lstat(source)
    if not stat.S_ISDIR(st.st_mode):
        if link:
            try:
                os.link(source, dest, follow_symlinks=False)
                return
            except OSError:
                pass
        shutil.copy2(source, dest, follow_symlinks=False)
        return
    dest.mkdir()
    for name in sorted(os.listdir(source)):
        child_rel = f"{rel}/{name}" if rel else name
        child = source / name
        if ignore.excluded(child_rel) and not (child.is_dir() and not child.is_symlink()
                                               and ignore.must_descend(child_rel)):
            continue
        filtered_tree(child, dest / name, child_rel, ignore, link=link)
    shutil.copystat(source, dest)
    os.chown(dest, st.st_uid, st.st_gid)


def copy_tree(source: Path, dest: Path, contents: bool = False) -> None:
    """Copy like ``cp -a`` (owners, modes, times, links, xattrs): ``source`` to the new
    ``dest``, or with ``contents`` what the directory ``source`` holds into ``dest``."""
    args = [f"{source}/.", f"{dest}/"] if contents else [str(source), str(dest)]
    done = subprocess.run(["cp", "-a", "--", *args], capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise BuildError(f"cannot copy {str(source)!r}: {message}")


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it (root ignores the modes inside)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
