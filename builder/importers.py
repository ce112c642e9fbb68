"""Loading image archives into the store: a docker-archive (``docker save``) or an OCI image
layout tar (``oci-archive:``), compressed with gzip, zstd, bzip2 or xz or not at all."""

from __future__ import annotations

import contextlib
import json
import lzma
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from builder.errors import BuildError
from builder.localimages import IMAGE_NAME_ANNOTATION, check_name, familiar_name, resolve
from builder.store import BuildStore
from layerstore.compression import decompress_reader, detect
from layerstore.content.copy import write_stream
from layerstore.digest import CHUNK
from layerstore.docker_archive import read_docker_archive
from layerstore.errors import InvalidArgument, LayerstoreError, NotFound
from layerstore.layout import LAYOUT_VERSION, REF_NAME
from layerstore.oci import Descriptor, Index, MediaType
from layerstore.walk import MAX_MANIFEST_SIZE, children

__all__ = ["Loaded", "load_archive", "plain_tar"]



@dataclass(frozen=True)
class Loaded:
    """One image taken from an archive: the names given to it and its image ID."""

    names: tuple[str, ...]
    image_id: str


def load_archive(path: Path, store: BuildStore, source: str) -> list[Loaded]:
    """Store every image of the uncompressed tar at ``path`` (``source`` names it in errors)
    and name them."""
    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise BuildError(f"{source}: not a tar archive: {exc}") from None
    with tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
        if "manifest.json" in members:
            return _load_docker(path, store)
        if "oci-layout" in members:
            return _load_oci(tar, members, store, source)
    raise BuildError(f"{source}: not an image archive: it has neither manifest.json "
                     "(docker-archive) nor oci-layout (OCI image layout)")


def _load_docker(path: Path, store: BuildStore) -> list[Loaded]:
    out = []
    for item in read_docker_archive(path, store.content):
        names = tuple(dict.fromkeys(familiar_name(t) for t in item.tags))
        for name in names:
            store.images.put(name, item.image.manifest)
        out.append(Loaded(names, str(item.image.config.digest)))
    return out


def _load_oci(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], store: BuildStore,
              source: str) -> list[Loaded]:
    marker = _small(tar, members, "oci-layout", source)
    try:
        version = json.loads(marker).get("imageLayoutVersion")
    except (ValueError, AttributeError):
        version = None
    if version != LAYOUT_VERSION:
        raise InvalidArgument(f"{source}: oci-layout: unsupported imageLayoutVersion "
                              f"{version!r} (want {LAYOUT_VERSION})")
    index = Index.from_json(_small(tar, members, "index.json", source), f"{source}: index.json")
    out = []
    for desc in index.manifests:
        if desc.media_type not in MediaType.MANIFESTS | MediaType.INDEXES:
            continue
        _copy_graph(tar, members, store, desc, source)
        names = tuple(n for n in [_layout_name(desc)] if n)
        for name in names:
            store.images.put(name, _plain(desc))
        out.append(Loaded(names, str(resolve(store, desc).config.digest)))
    return out


def _plain(desc: Descriptor) -> Descriptor:
    """``desc`` without the annotations that only mean something inside a layout."""
    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size,
                      platform=desc.platform)


def _layout_name(desc: Descriptor) -> str | None:
    """The image name an index entry carries: the containerd name annotation, else the ref
    name when it reads as an image name (``app:v1``; a bare ``v1`` is ``v1:latest``)."""
    annotations = desc.annotations or {}
    for key in (IMAGE_NAME_ANNOTATION, REF_NAME):
        value = annotations.get(key)
        if value:
            try:
                return familiar_name(check_name(value))
            except (BuildError, LayerstoreError):
                continue
    return None


def _copy_graph(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], store: BuildStore,
                root: Descriptor, source: str) -> None:
    """Copy ``root`` and everything it reaches from the archive into the content store,
    each blob verified against its descriptor as it is committed."""
    stack = [root]
    seen: set[str] = set()
    while stack:
        desc = stack.pop()
        if str(desc.digest) in seen:
            continue
        seen.add(str(desc.digest))
        if not store.content.exists(desc.digest):
            member = members.get(f"blobs/{desc.digest.algorithm}/{desc.digest.hex}")
            if member is None or not member.isfile():
                if desc.media_type in MediaType.NONDISTRIBUTABLE:
                    continue
                raise NotFound(f"{source}: the archive has no blob {desc.digest} "
                               f"({desc.media_type})")
            if desc.media_type in MediaType.MANIFESTS | MediaType.INDEXES \
                    and desc.size > MAX_MANIFEST_SIZE:
                raise InvalidArgument(f"{source}: manifest {desc.digest} is too large")
            f = tar.extractfile(member)
            assert f is not None
            write_stream(store.content, f, expected=desc.digest, size=desc.size)
        stack.extend(children(store.content, desc))


def _small(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str,
           source: str) -> bytes:
    member = members.get(name)
    if member is None or not member.isfile():
        raise NotFound(f"{source}: the archive has no file {name!r}")
    if member.size > MAX_MANIFEST_SIZE:
        raise InvalidArgument(f"{source}: {name} is too large ({member.size} bytes)")
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


@contextlib.contextmanager
def plain_tar(path: Path | None, store: BuildStore, stdin: BinaryIO) -> Iterator[Path]:
    """An uncompressed tar file holding the input: ``path`` itself when it is one, else a
    spool file under the store's tmp directory (removed afterwards). Without ``path`` the
    input is ``stdin``."""
    if path is None:
        with _spool(stdin, store) as spooled:
            yield spooled
        return
    try:
        f = path.open("rb")
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror}") from None
    with f:
        if path.is_file():
            if detect(f.read(8)) == "none":
                yield path
                return
            f.seek(0)
        with _spool(f, store) as spooled:
            yield spooled


@contextlib.contextmanager
def _spool(stream: BinaryIO, store: BuildStore) -> Iterator[Path]:
    with tempfile.NamedTemporaryFile(dir=store.tmp, prefix="load-", suffix=".tar") as spool:
        try:
            shutil.copyfileobj(decompress_reader(stream), spool, CHUNK)
        except (OSError, EOFError, ValueError, lzma.LZMAError, zstandard.ZstdError) as exc:
            raise BuildError(f"cannot read the archive: {exc}") from None
        spool.flush()
        yield Path(spool.name)
