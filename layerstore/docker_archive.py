"""The ``docker save`` / ``docker load`` archive format.

A tar holding ``manifest.json`` (``[{"Config", "RepoTags", "Layers"}]``), ``repositories``,
the config blobs and the *uncompressed* layer tars, each under ``blobs/sha256/<hex>``.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from layerstore.archive.writer import RECORD_SIZE, TarWriter
from layerstore.assembly import StoredImage
from layerstore.compression import decompress_reader
from layerstore.content.copy import put_bytes
from layerstore.content.store import ContentStore
from layerstore.digest import CHUNK, Digest, DigestingWriter
from layerstore.errors import DigestMismatch, InvalidArgument, NotFound
from layerstore.images import split_name
from layerstore.layerblob import Layer, store_tar_stream
from layerstore.oci import Image, Manifest, MediaType, describe
from layerstore.walk import load_manifest, read_small


@dataclass(frozen=True)
class ArchiveImage:
    """One image to write into, or read from, a docker-archive."""

    image: StoredImage
    tags: tuple[str, ...] = ()


def write_docker_archive(dest: Path | BinaryIO, store: ContentStore,
                         images: Sequence[ArchiveImage]) -> None:
    """Write ``images`` with their tags as a ``docker load``-able tar to ``dest``."""
    if isinstance(dest, Path):
        with dest.open("wb") as f:
            write_docker_archive(f, store, images)
        return
    manifests: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    tar = TarWriter(dest.write)
    tar.add_directory(b"blobs")
    tar.add_directory(b"blobs/sha256")
    for item in images:
        stored, tags = item.image, item.tags
        layer_paths = []
        config_path = f"blobs/sha256/{stored.config.digest.hex}"
        if config_path not in written:
            tar.add_data(config_path.encode(), read_small(store, stored.config))
            written.add(config_path)
        manifest = load_manifest(store, stored.manifest)
        if not isinstance(manifest, Manifest):
            raise InvalidArgument(f"{stored.manifest.digest} is an index, not an image")
        for desc, diff_id in zip(manifest.layers, stored.image.rootfs.diff_ids, strict=True):
            path = f"blobs/sha256/{diff_id.hex}"
            if path not in written:
                _add_layer(tar, store, desc.digest, diff_id, path)
                written.add(path)
            layer_paths.append(path)
        normalized = []
        for tag in tags:
            repo, t = split_name(tag)
            normalized.append(f"{repo}:{t}")
            if layer_paths:
                repositories.setdefault(repo, {})[t] = Path(layer_paths[-1]).name
        manifests.append({"Config": config_path, "RepoTags": normalized or None,
                          "Layers": layer_paths})
    tar.add_data(b"manifest.json", json.dumps(manifests).encode())
    tar.add_data(b"repositories", json.dumps(repositories).encode())
    tar.close(record_size=RECORD_SIZE)


def _regular_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Regular files by name; a symlink member (docker writes a repeated layer as a link to
    the first copy) maps to the file it points at inside the archive."""
    every = {m.name.removeprefix("./"): m for m in tar.getmembers()}
    out: dict[str, tarfile.TarInfo] = {}
    for original, first in every.items():
        name, member = original, first
        for _ in range(16):
            if not member.issym():
                break
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name),
                                                       member.linkname))
            if target not in every:
                break
            name, member = target, every[target]
        if member.isfile():
            out[original] = member
    return out


def read_docker_archive(src: Path, store: ContentStore, compression: str = "gzip"
                        ) -> list[ArchiveImage]:
    """Import every image of a docker-archive into ``store`` as OCI images (layers
    recompressed with ``compression``); every layer is checked against its diff_id."""
    try:
        tar = tarfile.open(src, mode="r:")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise InvalidArgument(f"{src}: not a docker-archive tar: {exc}") from None
    with tar:
        members = _regular_members(tar)
        entries = _manifest_entries(src, tar, members)
        out = []
        for i, entry in enumerate(entries):
            where = f"{src}: manifest.json[{i}]"
            config_raw = _member_bytes(tar, members, entry["Config"], where)
            image = Image.from_json(config_raw, f"{where} config {entry['Config']}")
            if len(image.rootfs.diff_ids) != len(entry["Layers"]):
                raise InvalidArgument(f"{where}: {len(entry['Layers'])} layers but the config "
                                      f"lists {len(image.rootfs.diff_ids)} diff_ids")
            layers = [
                _import_layer(tar, members, path, diff_id, store, compression, where)
                for path, diff_id in zip(entry["Layers"], image.rootfs.diff_ids, strict=True)
            ]
            put_bytes(store, config_raw)
            config = describe(MediaType.OCI_CONFIG, config_raw)
            manifest = Manifest(config=config, layers=tuple(x.descriptor for x in layers))
            raw = manifest.to_json()
            put_bytes(store, raw)
            stored = StoredImage(describe(MediaType.OCI_MANIFEST, raw), config, image)
            out.append(ArchiveImage(stored, tuple(entry.get("RepoTags") or ())))
        return out


def _manifest_entries(src: Path, tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]
                      ) -> list[dict[str, Any]]:
    return parse_manifest_entries(_member_bytes(tar, members, "manifest.json", str(src)),
                                  str(src))


def parse_manifest_entries(raw: bytes, where: str) -> list[dict[str, Any]]:
    """The entries of a docker-archive's ``manifest.json`` (``where`` names the archive in
    errors), each checked to have ``Config``, ``Layers`` and ``RepoTags`` of the right
    types."""
    try:
        entries = json.loads(raw)
    except ValueError as exc:
        raise InvalidArgument(f"{where}: manifest.json is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise InvalidArgument(f"{where}: manifest.json must be a JSON array")
    for i, entry in enumerate(entries):
        ok = (isinstance(entry, dict) and isinstance(entry.get("Config"), str)
              and isinstance(entry.get("Layers"), list)
              and all(isinstance(x, str) for x in entry["Layers"])
              and isinstance(entry.get("RepoTags") or [], list))
        if not ok:
            raise InvalidArgument(f"{where}: manifest.json[{i}] needs Config (string), "
                                  "Layers (array of strings) and RepoTags (array or null)")
    return entries


def _member_bytes(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str,
                  where: str) -> bytes:
    member = members.get(name.removeprefix("./"))
    if member is None:
        raise NotFound(f"{where}: the archive has no file {name!r}")
    if member.size > 16 << 20:
        raise InvalidArgument(f"{where}: {name} is too large for a JSON document")
    f = tar.extractfile(member)
    assert f is not None
    return f.read()


def _import_layer(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], path: str,
                  diff_id: Digest, store: ContentStore, compression: str, where: str) -> Layer:
    member = members.get(path.removeprefix("./"))
    if member is None:
        raise NotFound(f"{where}: the archive has no layer file {path!r}")
    f = tar.extractfile(member)
    assert f is not None
    try:
        return store_tar_stream(decompress_reader(f), store, compression,
                                expected_diff_id=diff_id)
    except DigestMismatch as exc:
        raise DigestMismatch(f"{where}: layer {path}: {exc} (from the config)") from None


def _add_layer(tar: TarWriter, store: ContentStore, digest: Digest, diff_id: Digest,
               name: str) -> None:
    with tempfile.TemporaryFile() as spool:
        hasher = DigestingWriter(spool)
        with store.reader(digest) as blob:
            plain = decompress_reader(blob)
            while chunk := plain.read(CHUNK):
                hasher.write(chunk)
        if hasher.digest() != diff_id:
            raise DigestMismatch(f"layer {digest} decompresses to {hasher.digest()}, "
                                 f"the config says {diff_id}")
        spool.seek(0)
        tar.add_data(name.encode(), spool, hasher.size)
