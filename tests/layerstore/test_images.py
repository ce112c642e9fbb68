"""The image name store, rootfs import, and bad input to the layout and archive readers."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from layerstore.assembly import import_rootfs
from layerstore.content.copy import put_bytes
from layerstore.content.local import LocalStore
from layerstore.diff import apply_layer
from layerstore.digest import Digest
from layerstore.docker_archive import read_docker_archive
from layerstore.errors import DigestMismatch, InvalidArgument, NotFound
from layerstore.images import ImageStore, split_name
from layerstore.layout import read_layout
from layerstore.oci import ImageConfig, Manifest, MediaType, describe
from layerstore.testing.tree import differences, dir_manifest
from layerstore.walk import load_manifest


def test_image_store_names(tmp_path: Path) -> None:
    images = ImageStore(tmp_path / "images.db")
    target = describe(MediaType.OCI_MANIFEST, b"{}")
    images.put("app", target)
    images.put("localhost:5000/team/app:v1", target)
    assert images.get("app:latest").target == target
    assert [r.name for r in images.list()] == ["app:latest", "localhost:5000/team/app:v1"]
    images.delete("app")
    with pytest.raises(NotFound, match="no image named app:latest"):
        images.get("app")
    assert images.referenced() == {target.digest}
    reopened = ImageStore(tmp_path / "images.db")
    assert reopened.get("localhost:5000/team/app:v1").target == target


@pytest.mark.parametrize("name", ["App", "a//b", "a:b:c", "app:-x", "", "a/" + "b" * 10 + ":"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid image name"):
        split_name(name)


def test_image_store_points_only_at_manifests(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="must point at a manifest or index"):
        ImageStore(tmp_path / "db").put("x", describe(MediaType.OCI_CONFIG, b"{}"))


@pytest.mark.parametrize("compress", ["-z", "--zstd", "-J", ""])
def test_import_rootfs_tarball(tmp_path: Path, busybox_rootfs: Path, compress: str) -> None:
    tarball = tmp_path / "rootfs.tar"
    subprocess.run(["tar", "-c", *([compress] if compress else []), "-f", str(tarball),
                    "-C", str(busybox_rootfs), "."], check=True)
    store = LocalStore(tmp_path / "store")
    stored = import_rootfs(tarball, store, config=ImageConfig(cmd=("sh",)))
    manifest = load_manifest(store, stored.manifest)
    assert isinstance(manifest, Manifest) and len(manifest.layers) == 1
    assert stored.image.config is not None and stored.image.config.cmd == ("sh",)
    assert stored.image.history is not None and len(stored.image.history) == 1
    root = tmp_path / "root"
    root.mkdir()
    assert apply_layer(store, manifest.layers[0], root) == stored.image.rootfs.diff_ids[0]
    assert not differences(dir_manifest(busybox_rootfs), dir_manifest(root))


def test_import_of_a_missing_tarball_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match=r"cannot read rootfs tarball .*nope\.tar"):
        import_rootfs(tmp_path / "nope.tar", LocalStore(tmp_path / "s"))


def _archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_docker_archive_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    layer = _layer_tar({"a": b"a"})
    diff_id = Digest.from_bytes(layer)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]}}).encode()
    cases = {
        "no-manifest": ({"x": b""}, NotFound, "no file 'manifest.json'"),
        "bad-json": ({"manifest.json": b"{"}, InvalidArgument, "not valid JSON"),
        "not-list": ({"manifest.json": b"{}"}, InvalidArgument, "must be a JSON array"),
        "bad-entry": ({"manifest.json": b'[{"Config": 1}]'}, InvalidArgument,
                      r"manifest.json\[0\] needs Config"),
        "missing-layer": ({"manifest.json": b'[{"Config":"c.json","Layers":["l.tar"]}]',
                           "c.json": config}, NotFound, "no layer file 'l.tar'"),
        "wrong-layer": ({"manifest.json": b'[{"Config":"c.json","Layers":["l.tar"]}]',
                         "c.json": config, "l.tar": _layer_tar({"b": b"b"})}, DigestMismatch,
                        "layer l.tar: layer tar has diff_id"),
        "count": ({"manifest.json": b'[{"Config":"c.json","Layers":[]}]', "c.json": config},
                  InvalidArgument, "0 layers but the config lists 1"),
    }
    for name, (files, error, message) in cases.items():
        with pytest.raises(error, match=message):
            read_docker_archive(_archive(tmp_path / f"{name}.tar", files), store)
    with pytest.raises(InvalidArgument, match="not a docker-archive"):
        read_docker_archive(tmp_path / "absent.tar", store)
    assert list(store.walk()) == []


def test_layout_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    layout = tmp_path / "layout"
    layout.mkdir()
    with pytest.raises(NotFound, match="no oci-layout file"):
        read_layout(layout, store)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')
    with pytest.raises(InvalidArgument, match="unsupported imageLayoutVersion"):
        read_layout(layout, store)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"size": 1}]}')
    with pytest.raises(InvalidArgument, match=r"index.json.manifests\[0\]"):
        read_layout(layout, store)
    blobs = LocalStore(tmp_path / "blobs-src")
    raw = b'{"not": "a manifest"}'
    put_bytes(blobs, raw)
    desc = describe(MediaType.OCI_MANIFEST, raw)
    (layout / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [json.loads(desc.to_json())]}))
    with pytest.raises(NotFound, match=str(desc.digest)):
        read_layout(layout, store)


def test_docker_archive_repeated_layer_as_symlink(tmp_path: Path) -> None:
    """docker save writes a layer repeated in one image as a symlink to its first copy."""
    store = LocalStore(tmp_path / "store")
    layer = _layer_tar({"f": b"same"})
    diff_id = str(Digest.from_bytes(layer))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]}}).encode()
    path = tmp_path / "rep.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in {"manifest.json": b'[{"Config":"c.json","RepoTags":["rep:1"],'
                                            b'"Layers":["a/layer.tar","b/layer.tar"]}]',
                           "c.json": config, "a/layer.tar": layer}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../a/layer.tar"
        tar.addfile(link)
    (image,) = read_docker_archive(path, store)
    assert len(image.image.image.rootfs.diff_ids) == 2 and image.tags == ("rep:1",)
