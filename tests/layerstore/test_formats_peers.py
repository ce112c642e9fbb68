"""Our OCI layouts and docker-archives against the real peers: skopeo, docker, umoci, BuildKit."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from layerstore.assembly import StoredImage, assemble_image, history_entry, host_architecture
from layerstore.content.local import LocalStore
from layerstore.diff import apply_layer, write_diff, write_tree
from layerstore.digest import Digest, chain_ids
from layerstore.docker_archive import ArchiveImage, read_docker_archive, write_docker_archive
from layerstore.layout import LayoutEntry, entries, read_layout, write_layout
from layerstore.oci import Image, ImageConfig, Manifest
from layerstore.testing.tree import differences, dir_manifest, tar_manifest
from layerstore.walk import load_manifest
from tests.peers import Dockerd, docker, require

GREETING = "hello from a layerstore image"
EXPORT_NOISE = frozenset({".dockerenv", "dev", "proc", "sys", "etc/hosts", "etc/hostname",
                          "etc/resolv.conf", "etc/mtab"})


@dataclass(frozen=True)
class Built:
    store: LocalStore
    image: StoredImage
    root: Path


def _image(store: LocalStore, layers: list, created_by: list[str]) -> StoredImage:
    config = ImageConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",),
                         cmd=("sh", "-c", f"echo {GREETING}; cat /opt/note 2>/dev/null || true"))
    image = Image(architecture=host_architecture(), os="linux", created="2024-01-01T00:00:00Z",
                  config=config,
                  history=tuple(history_entry(c, created="2024-01-01T00:00:00Z")
                                for c in created_by))
    return assemble_image(store, image, layers)


@pytest.fixture(scope="module")
def two_layer_image(tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: Path) -> Built:
    """busybox + a layer that adds, changes and deletes files and replaces a directory."""
    tmp = tmp_path_factory.mktemp("two-layer")
    store = LocalStore(tmp / "store")
    base = write_tree(busybox_rootfs, store, "gzip")
    upper = tmp / "upper"
    shutil.copytree(busybox_rootfs, upper, symlinks=True)
    (upper / "opt").mkdir()
    (upper / "opt/note").write_text("second layer\n")
    (upper / "etc/hostname").unlink()
    passwd = upper / "etc/passwd"
    passwd.write_text(passwd.read_text() + "app:x:1000:1000::/:/bin/sh\n")
    shutil.rmtree(upper / "home")
    (upper / "home/app").mkdir(parents=True)
    (upper / "usr/sbin").chmod(0o700)
    top = write_diff(busybox_rootfs, upper, store, "gzip")
    return Built(store, _image(store, [base, top], ["busybox rootfs", "changes"]), upper)


def test_docker_loads_and_runs_our_archive(two_layer_image: Built, dockerd: Dockerd,
                                           tmp_path: Path) -> None:
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, two_layer_image.store,
                         [ArchiveImage(two_layer_image.image, ("pybuild-test/archive:1",))])
    out = docker("load", "-i", str(archive)).stdout.decode()
    assert "pybuild-test/archive:1" in out
    run = docker("run", "--rm", "pybuild-test/archive:1").stdout.decode()
    assert run.splitlines() == [GREETING, "second layer"]
    inspect = json.loads(docker("inspect", "pybuild-test/archive:1").stdout)[0]
    assert inspect["Id"] == str(two_layer_image.image.config.digest)
    diff_ids = two_layer_image.image.image.rootfs.diff_ids
    assert inspect["RootFS"]["Layers"] == [str(d) for d in diff_ids]


def test_skopeo_copies_our_layout_to_a_docker_archive(two_layer_image: Built, dockerd: Dockerd,
                                                       tmp_path: Path) -> None:
    skopeo = require("skopeo")
    layout = tmp_path / "layout"
    write_layout(layout, two_layer_image.store, [LayoutEntry("v1", two_layer_image.image.manifest)])
    archive = tmp_path / "from-skopeo.tar"
    subprocess.run([skopeo, "copy", f"oci:{layout}:v1",
                    f"docker-archive:{archive}:pybuild-test/skopeo:1"], check=True,
                   capture_output=True)
    docker("load", "-i", str(archive))
    assert docker("run", "--rm", "pybuild-test/skopeo:1").stdout.decode().startswith(GREETING)
    # and back: skopeo's archive imports into our store with the same diff_ids
    store = LocalStore(tmp_path / "again")
    [imported] = read_docker_archive(archive, store)
    assert imported.tags == ("docker.io/pybuild-test/skopeo:1",)
    assert imported.image.image.rootfs == two_layer_image.image.image.rootfs


def test_layout_round_trips_and_skopeo_reads_it(two_layer_image: Built, tmp_path: Path) -> None:
    skopeo = require("skopeo")
    layout = tmp_path / "layout"
    write_layout(layout, two_layer_image.store, [LayoutEntry("v1", two_layer_image.image.manifest)])
    write_layout(layout, two_layer_image.store, [LayoutEntry("v2", two_layer_image.image.manifest)])
    assert [e.ref_name for e in entries(layout)] == ["v1", "v2"]
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci:{layout}:v2"], check=True,
                         capture_output=True).stdout
    assert Digest.from_bytes(raw) == two_layer_image.image.manifest.digest
    store = LocalStore(tmp_path / "imported")
    [entry] = read_layout(layout, store, "v1")
    manifest = load_manifest(store, entry.descriptor)
    assert isinstance(manifest, Manifest)
    assert all(store.exists(d.digest) for d in (manifest.config, *manifest.layers))


def test_umoci_unpack_gives_the_tree_our_apply_gives(two_layer_image: Built,
                                                     tmp_path: Path) -> None:
    umoci = require("umoci")
    layout = tmp_path / "layout"
    write_layout(layout, two_layer_image.store, [LayoutEntry("v1", two_layer_image.image.manifest)])
    bundle = tmp_path / "bundle"
    subprocess.run([umoci, "unpack", "--image", f"{layout}:v1", str(bundle)], check=True,
                   capture_output=True)
    ours = tmp_path / "ours"
    ours.mkdir()
    manifest = load_manifest(two_layer_image.store, two_layer_image.image.manifest)
    assert isinstance(manifest, Manifest)
    for desc in manifest.layers:
        apply_layer(two_layer_image.store, desc, ours)
    theirs_tree = dir_manifest(bundle / "rootfs")
    ours_tree = dir_manifest(ours)
    assert not differences(theirs_tree, ours_tree)
    assert not differences(ours_tree, dir_manifest(two_layer_image.root))


DOCKERFILE = """\
FROM pybuild-test/busybox:base
RUN mkdir -p /opt/data/sub /opt/keep && echo one > /opt/data/a && echo two > /opt/data/sub/b \\
 && ln -s /opt/data/a /opt/link && chmod 4755 /opt/data/a && chown 1:2 /opt/data/sub/b \\
 && mkfifo /opt/fifo && echo keep > /opt/keep/k
RUN echo changed > /opt/data/a && rm /etc/group && rm -rf /opt/data/sub \\
 && mkdir /opt/data/sub && echo new > /opt/data/sub/c && mv /opt/keep /opt/kept
COPY ctx.txt /opt/ctx.txt
RUN rm -rf /usr/sbin && mkdir -m 0750 /usr/sbin && ln /opt/ctx.txt /opt/hard \\
 && chmod 0600 /opt/hard && rm /bin/vi
"""


def test_buildkit_image_imports_applies_and_chains_like_docker(
        busybox_rootfs: Path, dockerd: Dockerd, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    base = _image(store, [write_tree(busybox_rootfs, store, "gzip")], ["busybox rootfs"])
    archive = tmp_path / "base.tar"
    write_docker_archive(archive, store, [ArchiveImage(base, ("pybuild-test/busybox:base",))])
    docker("load", "-i", str(archive))
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(DOCKERFILE)
    (context / "ctx.txt").write_text("from the context\n")
    docker("build", "-q", "-t", "pybuild-test/diff:1", str(context))
    saved = tmp_path / "saved.tar"
    docker("save", "-o", str(saved), "pybuild-test/diff:1")
    [imported] = read_docker_archive(saved, LocalStore(tmp_path / "imported"))
    assert imported.tags == ("pybuild-test/diff:1",)

    root = tmp_path / "root"
    root.mkdir()
    imported_store = LocalStore(tmp_path / "imported")
    manifest = load_manifest(imported_store, imported.image.manifest)
    assert isinstance(manifest, Manifest)
    diff_ids = [apply_layer(imported_store, desc, root) for desc in manifest.layers]

    inspect = json.loads(docker("inspect", "pybuild-test/diff:1").stdout)[0]
    assert [str(d) for d in diff_ids] == inspect["RootFS"]["Layers"]
    driver = inspect["GraphDriver"]["Name"]
    layerdb = Path("/var/lib/docker/image") / driver / "layerdb/sha256"
    for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
        assert (layerdb / chain.hex / "diff").read_text().strip() == str(diff_id)

    container = docker("create", "pybuild-test/diff:1").stdout.decode().strip()
    try:
        export = subprocess.Popen([require("docker"), "export", container],
                                  stdout=subprocess.PIPE)
        assert export.stdout is not None
        theirs = tar_manifest(export.stdout, EXPORT_NOISE)
        assert export.wait() == 0
    finally:
        docker("rm", "-f", container)
    ours = dir_manifest(root, EXPORT_NOISE)
    assert not differences(theirs, ours)
    assert ours["opt/data/sub/c"].kind == "file" and "opt/data/sub/b" not in ours
    assert "etc/group" not in ours and "bin/vi" not in ours and "opt/kept/k" in ours
    assert ours["opt/data/a"].mode == 0o4755 and ours["usr/sbin"].mode == 0o750
