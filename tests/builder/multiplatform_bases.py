"""A multi-platform busybox base made locally: Debian's busybox-static for amd64 (installed)
and for arm64 (``apt-get download busybox-static:arm64`` after ``dpkg --add-architecture
arm64``), one image each and an OCI index of both.

The arm64 package is cached under ``/var/cache/pybuild-tests/`` (``$PYBUILD_TEST_CACHE``), so
only the first session on a machine downloads it. Nothing here depends on pytest: the
benchmark uses it too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from builder.exporters.index import assemble_index
from builder.store import BuildStore
from layerstore.assembly import StoredImage, assemble_image, history_entry
from layerstore.diff import write_tree
from layerstore.oci import Descriptor, Image, ImageConfig
from layerstore.testing.rootfs import make_busybox_rootfs
from tests.builder.bases import CACHE_DIR, PATH_ENV, BaseImageError, _locked, run

ARM64_DEB = "busybox-static_arm64.deb"
CREATED = "1970-01-01T00:00:00Z"


def arm64_busybox_deb(cache_dir: Path = CACHE_DIR) -> Path:
    """The cached ``busybox-static:arm64`` package, downloaded with apt when missing."""
    deb = cache_dir / ARM64_DEB
    with _locked(cache_dir / ".lock"):
        if deb.exists():
            return deb
        foreign = run(["dpkg", "--print-foreign-architectures"], timeout=30).stdout.split()
        if b"arm64" not in foreign:
            run(["dpkg", "--add-architecture", "arm64"], timeout=30)
            run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], timeout=900)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".busybox-arm64-") as tmp:
            os.chmod(tmp, 0o777)  # apt downloads as _apt
            try:
                _download(tmp)
            except BaseImageError:  # the arm64 lists may be stale or missing
                run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], timeout=900)
                _download(tmp)
            got = next(Path(tmp).glob("busybox-static_*_arm64.deb"))
            os.replace(got, deb)
        return deb


def _download(directory: str) -> None:
    run(["sh", "-c", 'cd "$1" && apt-get download busybox-static:arm64', "sh", directory],
        timeout=600)


@contextlib.contextmanager
def arm64_busybox_rootfs(workdir: Path) -> Iterator[Path]:
    """A busybox rootfs whose ``/bin/busybox`` is the arm64 build (same version and applets
    as the host's busybox-static, whose applet list makes the links)."""
    deb = arm64_busybox_deb()
    unpacked = workdir / "busybox-arm64-deb"
    run(["dpkg-deb", "-x", str(deb), str(unpacked)], timeout=120)
    rootfs = make_busybox_rootfs(workdir / "busybox-arm64-rootfs")
    shutil.copy2(unpacked / "bin/busybox", rootfs / "bin/busybox")
    shutil.rmtree(unpacked)
    try:
        yield rootfs
    finally:
        shutil.rmtree(rootfs)


def _image(store: BuildStore, rootfs: Path, arch: str) -> StoredImage:
    layer = write_tree(rootfs, store.content, "gzip", source_date_epoch=0)
    image = Image(architecture=arch, os="linux", created=CREATED,
                  config=ImageConfig(env=(PATH_ENV,), cmd=("sh",)),
                  history=(history_entry(f"busybox-static {arch} rootfs", created=CREATED),))
    return assemble_image(store.content, image, [layer])


def seed_multiplatform_busybox(root: Path, workdir: Path, name: str = "busybox:latest"
                               ) -> tuple[StoredImage, StoredImage, Descriptor]:
    """Put ``name`` into the store at ``root`` as an index of busybox for linux/amd64 and
    linux/arm64; returns both images and the index."""
    workdir.mkdir(parents=True, exist_ok=True)
    with BuildStore.open(root) as store:
        amd64_root = make_busybox_rootfs(workdir / "busybox-amd64-rootfs")
        try:
            amd64 = _image(store, amd64_root, "amd64")
        finally:
            shutil.rmtree(amd64_root)
        with arm64_busybox_rootfs(workdir) as arm64_root:
            arm64 = _image(store, arm64_root, "arm64")
        index = assemble_index(store.content, [amd64, arm64])
        store.images.put(name, index)
    return amd64, arm64, index
