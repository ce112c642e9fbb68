"""Image archives: an OCI layout or a docker-archive as one tar, to a file or stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.errors import BuildError
from builder.localimages import LocalImage
from layerstore.content.store import ContentStore
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.layout import LayoutEntry, write_layout_archive

__all__ = ["Selected", "destination", "docker_images", "write_docker_archive",
           "write_oci_archive"]


@dataclass(frozen=True)
class Selected:
    """One image to export: the image and the name it was given by (None for an ID)."""

    image: LocalImage
    name: str | None


def docker_images(selected: Sequence[Selected]) -> list[ArchiveImage]:
    """One docker-archive entry per distinct image, carrying every name it was given by."""
    tags: dict[str, list[str]] = {}
    images: dict[str, LocalImage] = {}
    for s in selected:
        key = str(s.image.stored.manifest.digest)
        images.setdefault(key, s.image)
        names = tags.setdefault(key, [])
        if s.name is not None and s.name not in names:
            names.append(s.name)
    return [ArchiveImage(images[k].stored, tuple(tags[k])) for k in images]


def write_oci_archive(dest: BinaryIO, store: ContentStore, images: Sequence[LayoutEntry]
                      ) -> None:
    """Stream an OCI image layout holding ``images`` as a tar (see
    :func:`layerstore.layout.write_layout_archive`)."""
    write_layout_archive(dest, store, images)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def destination(path: Path | None) -> Iterator[BinaryIO]:
    """stdout, or ``path`` written through a temporary file renamed into place on success
    (a device or pipe given as ``path`` is written directly)."""
    if path is None:
        out = sys.stdout.buffer
        yield out
        out.flush()
        return
    if path.exists() and not path.is_file():
        with path.open("wb") as f:
            yield f
        return
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as exc:
        raise BuildError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
