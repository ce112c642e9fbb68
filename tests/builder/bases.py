"""The base images the example Dockerfiles build FROM, made locally (nothing is pulled).

* ``busybox:latest`` — Debian's busybox-static with a link per applet;
* ``debian:bookworm`` — ``debootstrap --variant=minbase`` with python3-minimal, gcc and
  libc6-dev (about 35 s on a good connection to deb.debian.org).

Each is a one-layer image made with layerstore and written as a docker-archive, which is then
loaded into docker, into a pybuild store, or into podman/buildah storage. The Debian rootfs
tarball is cached under ``/var/cache/pybuild-tests/`` (``$PYBUILD_TEST_CACHE``) keyed by the
debootstrap arguments, so only the first session on a machine runs debootstrap.

Nothing here depends on pytest: the benchmarks use it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from layerstore.assembly import StoredImage, assemble_image, history_entry, host_architecture
from layerstore.compression import compress_writer, decompress_reader
from layerstore.content.local import LocalStore
from layerstore.content.store import ContentStore
from layerstore.diff import write_tree
from layerstore.digest import CHUNK
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.layerblob import Layer, store_tar_stream
from layerstore.oci import Image, ImageConfig, Manifest
from layerstore.testing.rootfs import make_busybox_rootfs

DOCKER = "/usr/bin/docker"
CACHE_DIR = Path(os.environ.get("PYBUILD_TEST_CACHE") or "/var/cache/pybuild-tests")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREATED = "1970-01-01T00:00:00Z"
BUSYBOX = "busybox:latest"
DEBIAN = "debian:bookworm"
DEBOOTSTRAP_TIMEOUT = 1800


class BaseImageError(RuntimeError):
    """A base image could not be made or loaded; the message says which step failed."""


@dataclass(frozen=True)
class DebianSpec:
    """The debootstrap arguments of the Debian base; :meth:`key` names the cached tarball."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    variant: str = "minbase"
    include: tuple[str, ...] = ("python3-minimal", "gcc", "libc6-dev")

    def key(self) -> str:
        """A short digest of every argument (the package list sorted)."""
        doc = json.dumps([self.suite, self.mirror, self.variant, sorted(self.include)])
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def argv(self, target: Path) -> list[str]:
        """The debootstrap command line that makes this rootfs in ``target``."""
        return ["debootstrap", f"--variant={self.variant}", f"--include={','.join(self.include)}",
                self.suite, str(target), self.mirror]


@dataclass(frozen=True)
class BaseImage:
    """A base image written as a docker-archive; ``image_id`` is docker's ID for it."""

    name: str
    archive: Path
    manifest_digest: str
    image_id: str
    stored: StoredImage


@dataclass(frozen=True)
class BaseImages:
    """Both base images, made into one content store under ``workdir``."""

    workdir: Path
    content: LocalStore
    images: tuple[BaseImage, ...]
    debootstrap_seconds: float = 0.0

    def archives(self) -> list[Path]:
        """The docker-archive of every base image."""
        return [b.archive for b in self.images]

    def get(self, name: str) -> BaseImage:
        """The base image called ``name`` (``busybox:latest`` or ``debian:bookworm``)."""
        for base in self.images:
            if base.name == name:
                return base
        raise KeyError(name)


def run(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None,
        stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a command with a time limit; raise :class:`BaseImageError` when it fails."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout, input=stdin,
                              env=None if env is None else {**os.environ, **env})
    except subprocess.TimeoutExpired:
        raise BaseImageError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise BaseImageError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')[-3000:]}")
    return proc


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (sessions on one machine make the cache in turn)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tidy_debian(root: Path) -> None:
    """Drop what debootstrap leaves that an image does not need: downloaded packages, apt
    lists, device nodes (the runtime mounts /dev) and logs that name the build host."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "dev/*",
                    "var/log/bootstrap.log", "var/cache/ldconfig/aux-cache"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (root / "etc/hostname").write_text("localhost\n")


def debian_rootfs_tarball(spec: DebianSpec = DebianSpec(), cache_dir: Path = CACHE_DIR
                          ) -> tuple[Path, float]:
    """The cached zstd rootfs tarball of ``spec``, made by debootstrap when missing.

    Returns the path and the seconds debootstrap took (0.0 when the cache answered).
    """
    tarball = cache_dir / f"debian-{spec.suite}-{spec.variant}-{spec.key()}.tar.zst"
    with _locked(cache_dir / ".lock"):
        if tarball.exists():
            return tarball, 0.0
        if shutil.which("debootstrap") is None:
            raise BaseImageError("debootstrap is missing: apt-get install debootstrap")
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".debootstrap-") as tmp:
            root = Path(tmp) / "rootfs"
            start = time.monotonic()
            run(spec.argv(root), timeout=DEBOOTSTRAP_TIMEOUT)
            seconds = time.monotonic() - start
            _tidy_debian(root)
            partial = Path(tmp) / "rootfs.tar.zst"
            _tar_zstd(root, partial)
            os.replace(partial, tarball)
        return tarball, seconds


def _tar_zstd(root: Path, dest: Path) -> None:
    """GNU tar of ``root`` (numeric owners, xattrs, sorted) compressed with zstd into ``dest``."""
    with dest.open("wb") as out:
        tar = subprocess.Popen(
            ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name",
             "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        zstd = compress_writer(out, "zstd")
        while chunk := tar.stdout.read(CHUNK):
            zstd.write(chunk)
        zstd.close()
        if tar.wait(timeout=600) != 0:
            raise BaseImageError(f"tar of {root} failed ({tar.returncode})")
        out.flush()
        os.fsync(out.fileno())


def _config(cmd: str) -> ImageConfig:
    return ImageConfig(env=(PATH_ENV,), cmd=(cmd,))


def _image(store: ContentStore, layer: Layer, config: ImageConfig, created_by: str
           ) -> StoredImage:
    image = Image(architecture=host_architecture(), os="linux", created=CREATED, config=config,
                  history=(history_entry(created_by, created=CREATED),))
    return assemble_image(store, image, [layer])


def busybox_image(store: ContentStore, workdir: Path) -> StoredImage:
    """``busybox:latest`` from busybox-static (``Cmd ["sh"]``)."""
    rootfs = make_busybox_rootfs(workdir / "busybox-rootfs")
    try:
        layer = write_tree(rootfs, store, "gzip", source_date_epoch=0)
    finally:
        shutil.rmtree(rootfs)
    return _image(store, layer, _config("sh"), "busybox-static rootfs")


def debian_image(store: ContentStore, tarball: Path, spec: DebianSpec = DebianSpec()
                 ) -> StoredImage:
    """``debian:bookworm`` from the debootstrap tarball of ``spec`` (``Cmd ["bash"]``)."""
    with tarball.open("rb") as f:
        layer = store_tar_stream(decompress_reader(f), store, "gzip")
    return _image(store, layer, _config("bash"),
                  f"debootstrap --variant={spec.variant} --include={','.join(spec.include)} "
                  f"{spec.suite}")


def make_base_images(workdir: Path, cache_dir: Path = CACHE_DIR) -> BaseImages:
    """Make both base images into ``workdir/content`` and write one docker-archive each
    (running debootstrap only when the cache has no tarball for :class:`DebianSpec`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    store = LocalStore(workdir / "content")
    tarball, seconds = debian_rootfs_tarball(DebianSpec(), cache_dir)
    out = []
    for name, make in ((BUSYBOX, lambda: busybox_image(store, workdir)),
                       (DEBIAN, lambda: debian_image(store, tarball))):
        stored = make()
        archive = workdir / f"{name.replace(':', '-')}.tar"
        write_docker_archive(archive, store, [ArchiveImage(stored, (name,))])
        out.append(BaseImage(name, archive, str(stored.manifest.digest),
                             str(stored.config.digest), stored))
    return BaseImages(workdir, store, tuple(out), seconds)


def docker_image_id(name: str) -> str | None:
    """The ID docker has for ``name``, or None when it has no such image."""
    proc = subprocess.run([DOCKER, "image", "inspect", "--format", "{{.Id}}", name],
                          capture_output=True, timeout=60)
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def load_into_docker(bases: BaseImages) -> None:
    """``docker load`` every base image that docker does not already hold with the same ID."""
    for base in bases.images:
        if docker_image_id(base.name) != base.image_id:
            run([DOCKER, "load", "-i", str(base.archive)], timeout=600)


def load_into_pybuild(bases: BaseImages, root: Path, pybuild: Sequence[str]) -> None:
    """Make every base image available to ``pybuild --root root``: through ``pybuild load``
    when that command exists, else by copying the blobs and naming the manifest directly."""
    root.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run([*pybuild, "--root", str(root), "load", "--help"],
                           capture_output=True, timeout=120)
    if probe.returncode == 0:
        for base in bases.images:
            run([*pybuild, "--root", str(root), "load", "-i", str(base.archive)], timeout=600)
        return
    from builder.store import BuildStore
    from layerstore.content.copy import copy_blob
    from layerstore.walk import load_manifest

    with BuildStore.open(root) as store:
        for base in bases.images:
            manifest = load_manifest(bases.content, base.stored.manifest)
            if not isinstance(manifest, Manifest):
                raise BaseImageError(f"{base.name} is not a single-platform image")
            for desc in (base.stored.manifest, manifest.config, *manifest.layers):
                copy_blob(bases.content, store.content, desc)
            store.images.put(base.name, base.stored.manifest)


def load_into_podman(bases: BaseImages, argv: Sequence[str], env: dict[str, str] | None = None
                     ) -> None:
    """``podman load`` (``argv`` = the podman command with its global options) every base."""
    for base in bases.images:
        run([*argv, "load", "-i", str(base.archive)], timeout=600, env=env)


def load_into_buildah(bases: BaseImages, argv: Sequence[str] = ("buildah",),
                      env: dict[str, str] | None = None) -> None:
    """``buildah pull docker-archive:FILE`` every base, tagged with its short name."""
    for base in bases.images:
        run([*argv, "pull", "-q", f"docker-archive:{base.archive}"], timeout=600, env=env)
