"""docker-archives as streams: read one as it arrives, write one as a generator of bytes.

:func:`read_stream` takes the tar ``docker save`` writes (the legacy layout of
``<id>/layer.tar`` and ``<config>.json``, or the OCI-flavoured one of ``blobs/sha256/…`` that
newer engines write) in a single forward pass: each layer is compressed into the content store
as it is read, small JSON documents are kept, and ``manifest.json`` (which comes last) then ties
them together. Nothing is spooled to disk.

:func:`archive_chunks` yields a ``docker load``-able tar whose layer entries are the stored
blobs themselves (gzip or plain; the engine inflates them and checks them against the
config's diff_ids), so sizes are known up front and a layer is neither decompressed nor
spooled. A zstd layer, which older engines cannot read, is sent decompressed: it is inflated
once to learn its size and once more as it is sent. Layers the engine holds already can be
left out (see :func:`archive_chunks`).
"""

from __future__ import annotations

import io
import json
import posixpath
import tarfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, BinaryIO

from layerstore.archive.writer import BLOCK, RECORD_SIZE, TYPE_REG, encode_header
from layerstore.assembly import StoredImage
from layerstore.compression import decompress_reader, detect
from layerstore.content.copy import put_bytes
from layerstore.content.store import ContentStore
from layerstore.digest import CHUNK, Digest, chain_ids, new_hasher
from layerstore.docker_archive import ArchiveImage, parse_manifest_entries
from layerstore.errors import DigestMismatch, InvalidArgument, NotFound
from layerstore.images import split_name
from layerstore.layerblob import Layer, store_tar_stream
from layerstore.oci import Image, Manifest, MediaType, describe
from layerstore.walk import load_manifest, read_small

__all__ = ["archive_chunks", "read_stream"]

MAX_DOCUMENT = 16 << 20
_LEGACY_SKIPPED = ("/json", "/VERSION")


class _Rejoined(io.RawIOBase):
    """``head`` followed by the rest of ``stream``."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._head = memoryview(head)
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._stream.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _is_document(head: bytes) -> bool:
    """Whether a member starting with ``head`` is a JSON document rather than a layer."""
    if head[257:262] == b"ustar" or detect(head[:8]) != "none":
        return False
    return head.lstrip()[:1] in (b"{", b"[")


def read_stream(stream: BinaryIO, store: ContentStore, where: str,
                compression: str = "gzip") -> list[ArchiveImage]:
    """Store every image of the docker-archive read from ``stream`` (one pass) as an OCI
    image with ``compression`` layers; ``where`` names the source in errors. Every layer is
    checked against the diff_id its config gives."""
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", bufsize=CHUNK)  # noqa: SIM115
    except tarfile.TarError as exc:
        raise InvalidArgument(f"{where}: not a docker-archive tar: {exc}") from None
    layers: dict[str, Layer] = {}
    documents: dict[str, bytes] = {}
    links: dict[str, str] = {}
    with tar:
        try:
            for member in tar:
                _take(tar, member, store, compression, where, layers, documents, links)
        except tarfile.TarError as exc:
            raise InvalidArgument(f"{where}: the archive is damaged: {exc}") from None
    return _assemble(store, where, layers, documents, links)


def _take(tar: tarfile.TarFile, member: tarfile.TarInfo, store: ContentStore,
          compression: str, where: str, layers: dict[str, Layer], documents: dict[str, bytes],
          links: dict[str, str]) -> None:
    """Keep what one archive member holds: a layer (stored), a document or a link."""
    name = member.name.removeprefix("./")
    if member.issym() or member.islnk():
        base = posixpath.dirname(name) if member.issym() else ""
        links[name] = posixpath.normpath(posixpath.join(base, member.linkname))
        return
    if not member.isfile() or name.endswith(_LEGACY_SKIPPED):
        return
    f = tar.extractfile(member)
    assert f is not None
    head = f.read(512)
    if not name.endswith("/layer.tar") and _is_document(head):
        if member.size > MAX_DOCUMENT:
            raise InvalidArgument(f"{where}: {name} is too large for a JSON document")
        documents[name] = head + f.read()
        return
    rest = io.BufferedReader(_Rejoined(head, f), buffer_size=CHUNK)
    layers[name] = store_tar_stream(decompress_reader(rest), store, compression)


def _resolve(name: str, links: dict[str, str]) -> str:
    name = name.removeprefix("./")
    for _ in range(16):
        if name not in links:
            break
        name = links[name]
    return name


def _assemble(store: ContentStore, where: str, layers: dict[str, Layer],
              documents: dict[str, bytes], links: dict[str, str]) -> list[ArchiveImage]:
    raw = documents.get(_resolve("manifest.json", links))
    if raw is None:
        raise NotFound(f"{where}: the archive has no manifest.json")
    out = []
    for i, entry in enumerate(_entries(raw, where)):
        at = f"{where}: manifest.json[{i}]"
        config_raw = documents.get(_resolve(entry["Config"], links))
        if config_raw is None:
            raise NotFound(f"{at}: the archive has no config {entry['Config']!r}")
        image = Image.from_json(config_raw, f"{at} config {entry['Config']}")
        diff_ids = image.rootfs.diff_ids
        if len(diff_ids) != len(entry["Layers"]):
            raise InvalidArgument(f"{at}: {len(entry['Layers'])} layers but the config lists "
                                  f"{len(diff_ids)} diff_ids")
        descriptors = []
        for path, diff_id in zip(entry["Layers"], diff_ids, strict=True):
            layer = layers.get(_resolve(path, links))
            if layer is None:
                raise NotFound(f"{at}: the archive has no layer {path!r}")
            if layer.diff_id != diff_id:
                raise DigestMismatch(f"{at}: layer {path} has diff_id {layer.diff_id}, the "
                                     f"config says {diff_id}")
            descriptors.append(layer.descriptor)
        put_bytes(store, config_raw)
        config = describe(MediaType.OCI_CONFIG, config_raw)
        manifest_raw = Manifest(config=config, layers=tuple(descriptors)).to_json()
        put_bytes(store, manifest_raw)
        stored = StoredImage(describe(MediaType.OCI_MANIFEST, manifest_raw), config, image)
        out.append(ArchiveImage(stored, tuple(entry.get("RepoTags") or ())))
    return out


def _entries(raw: bytes, where: str) -> list[dict[str, Any]]:
    return parse_manifest_entries(raw, where)


def _file(name: str, size: int) -> bytes:
    return encode_header(name.encode(), TYPE_REG, mode=0o644, size=size, device_fields=False)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def _layer_entry(store: ContentStore, digest: Digest, diff_id: Digest, name: str
                 ) -> Iterator[bytes]:
    """One layer's tar entry: the stored blob as it is, or inflated when it is zstd."""
    with store.reader(digest) as blob:
        head = blob.read(8)
    if detect(head) != "zstd":
        size = store.info(digest).size
        yield _file(name, size)
        with store.reader(digest) as blob:
            while chunk := blob.read(CHUNK):
                yield chunk
        yield _padding(size)
        return
    hasher, size = new_hasher("sha256"), 0
    with store.reader(digest) as blob:
        plain = decompress_reader(blob)
        while chunk := plain.read(CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    if Digest("sha256", hasher.hexdigest()) != diff_id:
        raise DigestMismatch(f"layer {digest} decompresses to sha256:{hasher.hexdigest()}, "
                             f"the config says {diff_id}")
    yield _file(name, size)
    with store.reader(digest) as blob:
        plain = decompress_reader(blob)
        while chunk := plain.read(CHUNK):
            yield chunk
    yield _padding(size)


def archive_chunks(store: ContentStore, images: Sequence[ArchiveImage],
                   present: frozenset[Digest] = frozenset()) -> Iterator[bytes]:
    """The bytes of a docker-archive of ``images`` (with their tags), produced as they are
    sent (see the module docstring). A layer whose chain ID is in ``present`` (the receiver
    holds that stack of layers already) is listed in ``manifest.json`` but not sent: a
    layer-store engine only opens the file of a layer it lacks."""
    manifests: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    total = 0
    for item in images:
        stored = item.image
        manifest = load_manifest(store, stored.manifest)
        if not isinstance(manifest, Manifest):
            raise InvalidArgument(f"{stored.manifest.digest} is an index, not an image")
        config_path = f"blobs/sha256/{stored.config.digest.hex}"
        if config_path not in written:
            config = read_small(store, stored.config)
            for chunk in (_file(config_path, len(config)), config, _padding(len(config))):
                total += len(chunk)
                yield chunk
            written.add(config_path)
        layer_paths = []
        diff_ids = stored.image.rootfs.diff_ids
        for desc, diff_id, chain in zip(manifest.layers, diff_ids, chain_ids(diff_ids),
                                        strict=True):
            path = f"blobs/sha256/{desc.digest.hex}"
            if path not in written and chain not in present:
                for chunk in _layer_entry(store, desc.digest, diff_id, path):
                    total += len(chunk)
                    yield chunk
                written.add(path)
            layer_paths.append(path)
        tags = []
        for tag in item.tags:
            repo, t = split_name(tag)
            tags.append(f"{repo}:{t}")
            if layer_paths:
                repositories.setdefault(repo, {})[t] = stored.config.digest.hex
        manifests.append({"Config": config_path, "RepoTags": tags or None,
                          "Layers": layer_paths})
    for name, doc in (("manifest.json", manifests), ("repositories", repositories)):
        data = json.dumps(doc).encode()
        for chunk in (_file(name, len(data)), data, _padding(len(data))):
            total += len(chunk)
            yield chunk
    end = bytes(2 * BLOCK)
    yield end + bytes(-(total + len(end)) % RECORD_SIZE)
