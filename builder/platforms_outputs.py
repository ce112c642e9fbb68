"""Outputs of a multi-platform build.

The index is what the image store, ``type=oci`` and ``type=registry`` take; a filesystem
output (``type=local``, ``type=tar``) holds one directory per platform named
``<os>_<arch>[_<variant>]`` (``linux_amd64/``, ``linux_arm_v7/``), as BuildKit splits it. A
docker archive holds one platform only, so ``type=docker`` (and ``--load``) is refused before
anything is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError
from builder.exporters.archives import destination
from builder.platforms import format_platform
from builder.store import BuildStore, view_of
from layerstore import treecopy
from layerstore.archive.writer import RECORD_SIZE, TarWriter, walk
from layerstore.oci import Platform

if TYPE_CHECKING:
    from builder.outputs import OutputSpec
    from builder.platforms_build import PlatformBuild

__all__ = ["check_outputs", "platform_dir", "write_platform_outputs"]


def platform_dir(platform: Platform) -> str:
    """``linux_arm64``: a platform's directory in a filesystem output."""
    return "_".join(x for x in (platform.os, platform.architecture, platform.variant) if x)


def check_outputs(outputs: Sequence[OutputSpec], platforms: Sequence[Platform],
                  load: bool = False) -> None:
    """Refuse the outputs a multi-platform result cannot be written to (``load``: whether
    ``--load`` was given)."""
    shown = ",".join(format_platform(p) for p in platforms)
    if load:
        raise BuildError(f"--load: cannot load a multi-platform image into docker (--platform "
                         f"{shown}); build one platform, or push / use -o type=oci")
    for out in outputs:
        if out.type == "docker":
            raise BuildError(f"--output type=docker: a docker archive holds one platform, but "
                             f"--platform names {len(platforms)} ({shown}); use type=oci, "
                             "push, or build one platform")
        if out.type in ("image", "oci") and not out.layers.is_default:
            raise BuildError(f"--output type={out.type}: converting the layers of a "
                             f"multi-platform image is not supported (--platform {shown})")


def write_platform_outputs(store: BuildStore, built: Sequence[PlatformBuild],
                           out: OutputSpec) -> None:
    """Write a ``type=local`` or ``type=tar`` output with a directory per platform."""
    if out.type == "local":
        dest = Path(out.dest or ".")
        for b in built:
            target = dest / platform_dir(b.platform)
            try:
                target.mkdir(parents=True, exist_ok=True)
                with view_of(store, b.chain) as root:
                    treecopy.copy_tree(root, target, contents=True)
            except OSError as exc:
                raise BuildError(f"cannot write the filesystem to {target}: "
                                 f"{exc.strerror or exc}") from None
        return
    path = None if out.dest in (None, "-") else Path(out.dest or "")
    with destination(path) as f:
        tar = TarWriter(f.write)
        for b in built:
            name = platform_dir(b.platform).encode()
            with view_of(store, b.chain) as root:
                base = os.fsencode(root)
                tar.add(name, base, os.lstat(base))
                for rel, full, st in walk(base):
                    tar.add(name + b"/" + rel, full, st)
        tar.close(record_size=RECORD_SIZE)
