"""Comparable descriptions of file trees, from a directory or from a tar stream.

Used by the tests to say "these two trees are equal" in terms of paths, types, modes,
owners, sizes, content hashes, link targets and device numbers.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from layerstore.digest import Digest


@dataclass(frozen=True)
class Entry:
    """One path of a tree."""

    kind: str
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""
    link: str = ""
    device: tuple[int, int] = (0, 0)


def _hash_file(path: str) -> str:
    with open(path, "rb") as f:
        return Digest.from_stream(f).hex


@dataclass(frozen=True)
class Node:
    """A small file's full description, content included (for trees of a few files)."""

    type: str
    mode: int
    uid: int
    gid: int
    content: bytes | str | None = None


def walk(root: Path) -> Iterator[tuple[str, str, os.stat_result]]:
    """``(relative path, full path, lstat)`` of everything below ``root``."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            full = os.path.join(dirpath, name)
            yield os.path.relpath(full, root), full, os.lstat(full)


def read_tree(root: Path) -> dict[str, Node]:
    """Every path below ``root`` mapped to its :class:`Node`, file contents included."""
    tree: dict[str, Node] = {}
    for rel, full, st in walk(root):
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            tree[rel] = Node("dir", mode, st.st_uid, st.st_gid)
        elif stat.S_ISLNK(st.st_mode):
            tree[rel] = Node("symlink", mode, st.st_uid, st.st_gid, os.readlink(full))
        elif stat.S_ISREG(st.st_mode):
            tree[rel] = Node("file", mode, st.st_uid, st.st_gid, Path(full).read_bytes())
        else:
            tree[rel] = Node("other", mode, st.st_uid, st.st_gid, str(st.st_rdev))
    return tree


def expect_files(tree: Mapping[str, Node]) -> dict[str, str]:
    """The regular files of a :func:`read_tree` result with their text content."""
    return {k: e.content.decode() for k, e in tree.items()
            if e.type == "file" and isinstance(e.content, bytes)}


def dir_manifest(root: Path, exclude: frozenset[str] = frozenset()) -> dict[str, Entry]:
    """Describe every path below ``root`` (relative, without leading ``./``)."""
    out: dict[str, Entry] = {}
    for rel, full, st in walk(root):
        if rel in exclude or rel.split("/")[0] in exclude:
            continue
        perm = stat.S_IMODE(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            out[rel] = Entry("file", perm, st.st_uid, st.st_gid, st.st_size, _hash_file(full))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = Entry("dir", perm, st.st_uid, st.st_gid)
        elif stat.S_ISLNK(st.st_mode):
            out[rel] = Entry("symlink", 0, st.st_uid, st.st_gid, link=os.readlink(full))
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            kind = "char" if stat.S_ISCHR(st.st_mode) else "block"
            out[rel] = Entry(kind, perm, st.st_uid, st.st_gid,
                             device=(os.major(st.st_rdev), os.minor(st.st_rdev)))
        elif stat.S_ISFIFO(st.st_mode):
            out[rel] = Entry("fifo", perm, st.st_uid, st.st_gid)
    return out


def tar_manifest(stream: BinaryIO, exclude: frozenset[str] = frozenset()) -> dict[str, Entry]:
    """Describe a plain tar stream (such as ``docker export``) as :func:`dir_manifest` would
    describe it extracted; hardlinks take their target's description."""
    out: dict[str, Entry] = {}
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            rel = os.path.normpath(member.name.lstrip("/").removeprefix("./"))
            if rel in (".", "") or rel in exclude or rel.split("/")[0] in exclude:
                continue
            perm = member.mode & 0o7777
            if member.isreg():
                f = tar.extractfile(member)
                assert f is not None
                out[rel] = Entry("file", perm, member.uid, member.gid, member.size,
                                 Digest.from_stream(f).hex)
            elif member.islnk():
                target = os.path.normpath(member.linkname.lstrip("/").removeprefix("./"))
                out[rel] = out[target]
            elif member.isdir():
                out[rel] = Entry("dir", perm, member.uid, member.gid)
            elif member.issym():
                out[rel] = Entry("symlink", 0, member.uid, member.gid, link=member.linkname)
            elif member.ischr() or member.isblk():
                out[rel] = Entry("char" if member.ischr() else "block", perm, member.uid,
                                 member.gid, device=(member.devmajor, member.devminor))
            elif member.isfifo():
                out[rel] = Entry("fifo", perm, member.uid, member.gid)
    return out


def differences(left: dict[str, Entry], right: dict[str, Entry], limit: int = 20) -> list[str]:
    """Human-readable differences between two manifests (at most ``limit``)."""
    out = []
    for path in sorted(left.keys() | right.keys()):
        a, b = left.get(path), right.get(path)
        if a != b:
            out.append(f"{path}: {a} != {b}")
            if len(out) >= limit:
                break
    return out
