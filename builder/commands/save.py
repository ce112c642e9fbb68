"""``pybuild save``: write images to a tar archive, as ``docker save`` or as an OCI layout."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.commands.common import IMAGE_NAME_ANNOTATION, LocalImage, find_image, find_name
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.content.store import ContentStore
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.layout import LAYOUT_VERSION, REF_NAME, LayoutEntry
from layerstore.oci import Descriptor, Index, MediaType
from layerstore.walk import reachable


@dataclass(frozen=True)
class Selected:
    """One image argument: the image and the name it was given by (None for an ID)."""

    image: LocalImage
    name: str | None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``save`` to the subcommands."""
    parser = sub.add_parser(
        "save", help="save images to a tar archive",
        description="Write images to a tar archive: the docker-archive that 'docker load' "
                    "reads (with the names as RepoTags), or with --format oci an OCI image "
                    "layout ('oci-archive:' for skopeo and podman; each name is the "
                    f"{REF_NAME} annotation). Images given by ID are written without a name.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="name or ID")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write to FILE instead of stdout (which must not be a terminal)")
    parser.add_argument("--format", choices=("docker", "oci"), default="docker",
                        help="archive format (default: docker)")
    parser.set_defaults(command_module=sys.modules[__name__])


def run(args: argparse.Namespace, store: BuildStore) -> int:
    """Write the archive; nothing is left at ``-o FILE`` when it fails."""
    if args.output is None and sys.stdout.isatty():
        raise BuildError("refusing to write an image archive to a terminal: use -o FILE or "
                         "redirect the output")
    selected = [select(store, ref) for ref in args.images]
    with destination(args.output) as out:
        if args.format == "oci":
            write_oci_archive(out, store.content, [
                LayoutEntry(s.name, s.image.target) for s in selected])
        else:
            write_docker_archive(out, store.content, docker_images(selected))
    return 0


def select(store: BuildStore, ref: str) -> Selected:
    """The image ``ref`` names, with the stored name when it is a name."""
    record = find_name(store, ref)
    return Selected(find_image(store, ref), record.name if record is not None else None)


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
    """Stream an OCI image layout holding ``images`` (and every blob they reach) as a tar.

    Each named entry is annotated with its name as ``org.opencontainers.image.ref.name`` and
    ``io.containerd.image.name``. Blobs are read from the store as they are written.
    """
    blobs: dict[str, Descriptor] = {}
    for entry in images:
        for desc in reachable(store, entry.descriptor):
            blobs.setdefault(str(desc.digest), desc)
    manifests = []
    for entry in images:
        annotations = dict(entry.descriptor.annotations or {})
        if entry.ref_name:
            annotations[REF_NAME] = entry.ref_name
            annotations[IMAGE_NAME_ANNOTATION] = entry.ref_name
        manifests.append(Descriptor(
            media_type=entry.descriptor.media_type, digest=entry.descriptor.digest,
            size=entry.descriptor.size, annotations=annotations or None,
            platform=entry.descriptor.platform))
    index = Index(manifests=tuple(manifests), media_type=MediaType.OCI_INDEX)
    with tarfile.open(fileobj=dest, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", f'{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}'.encode())
        _add_bytes(tar, "index.json", index.to_json())
        _add_dir(tar, "blobs")
        for algorithm in sorted({d.digest.algorithm for d in blobs.values()}):
            _add_dir(tar, f"blobs/{algorithm}")
        for key in sorted(blobs):
            digest = blobs[key].digest
            with store.reader(digest) as blob:
                info = _info(f"blobs/{digest.algorithm}/{digest.hex}", tarfile.REGTYPE, 0o644)
                info.size = os.fstat(blob.fileno()).st_size
                tar.addfile(info, blob)


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    return info


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = _info(name, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


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
