"""``pybuild build`` flags checked before anything is built: ``--platform`` and the
``--output`` attributes."""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from builder.store import BuildStore
from layerstore.assembly import host_architecture, load_image
from layerstore.oci import MediaType
from registry.testing.processes import distribution
from tests.builder.test_build import build
from tests.peers import Dockerd, docker, require

NO_RUN = "FROM busybox\nENV A=1\n"


@pytest.mark.parametrize(("platform", "message"), [
    ("linux/sparc", "--platform linux/sparc: cannot build for linux/sparc: unknown "
     "architecture 'sparc'"),
    ("windows/amd64", "--platform windows/amd64: cannot build for windows/amd64"),
    ("linux/amd64,linux/bogus", "--platform linux/bogus: cannot build for linux/bogus: "
     "unknown architecture 'bogus'"),
    ("linux/amd64,,linux/arm64", "--platform linux/amd64,,linux/arm64: invalid platform "
     "'linux/amd64,,linux/arm64': an empty entry"),
    ("linux", "--platform linux: invalid platform 'linux'"),
])
def test_a_platform_we_cannot_build_is_refused(store_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               platform: str, message: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, NO_RUN, "--platform", platform, "-t", "plat:1") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}")
    with BuildStore.open(store_root) as store:
        assert "plat:1" not in [record.name for record in store.images.list()]


@pytest.mark.parametrize("spelling", ["linux/{arch}", "Linux/{arch}", "linux/x86_64"])
def test_the_host_platform_is_accepted(store_root: Path, tmp_path: Path, spelling: str) -> None:
    arch = host_architecture()
    if "x86_64" in spelling and arch != "amd64":
        spelling = "linux/{arch}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, NO_RUN, "--platform", spelling.format(arch=arch),
                 "-t", "plat:2") == 0
    with BuildStore.open(store_root) as store:
        image = load_image(store.content, store.images.get("plat:2").target).image
    assert (image.os, image.architecture) == ("linux", arch)


OUT_DOCKERFILE = "FROM busybox\nRUN echo made-here > /made\n"


@pytest.mark.parametrize(("spec", "message"), [
    ("type=oci,dest=x.tar,bogus=1", "unknown attribute 'bogus' for type=oci"),
    ("type=local,dest=out,compression=zstd", "unknown attribute 'compression' for type=local"),
    ("type=tar,dest=x.tar,oci-mediatypes=true", "unknown attribute 'oci-mediatypes' for "
     "type=tar"),
    ("type=registry,name=r/x:1,Bogus=2", "unknown attribute 'bogus' for type=registry"),
    ("type=oci,dest=x.tar,compression=brotli", "compression='brotli' is not one of gzip, zstd, "
     "uncompressed"),
    ("type=oci,dest=x.tar,compression-level=x", "compression-level='x' is not a whole number"),
    ("type=oci,dest=x.tar,compression-level=10", "compression-level=10 is out of range for "
     "gzip (0-9)"),
    ("type=oci,dest=x.tar,compression=zstd,compression-level=23", "compression-level=23 is out "
     "of range for zstd (0-22)"),
    ("type=docker,dest=x.tar,force-compression=maybe", "force-compression='maybe' must be true "
     "or false"),
    ("type=image,oci-mediatypes=yes please", "oci-mediatypes='yes please' must be true or "
     "false"),
    ("type=oci,dest=x.tar,compression=zstd,oci-mediatypes=false", "compression=zstd needs "
     "oci-mediatypes=true"),
])
def test_bad_output_attributes(store_root: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str], spec: str,
                               message: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, OUT_DOCKERFILE, "-o", spec) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --output {spec!r}: "), err
    assert message in err[0]


def raw_manifest(layout: Path) -> dict[str, Any]:
    """The manifest of the one image in an OCI layout directory, as skopeo reads it."""
    out = subprocess.run([require("skopeo"), "inspect", "--raw", f"oci:{layout}"],
                         capture_output=True, check=True, timeout=120)
    return dict(json.loads(out.stdout))


def oci_output(store_root: Path, tmp_path: Path, name: str, *attrs: str,
               no_cache: bool = False) -> Path:
    """Build :data:`OUT_DOCKERFILE` into an OCI archive with ``attrs``; the unpacked layout."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    archive = tmp_path / f"{name}.tar"
    spec = ",".join(["type=oci", f"dest={archive}", f"name=out:{name}", *attrs])
    flags = ("--no-cache",) if no_cache else ()
    assert build(store_root, ctx, OUT_DOCKERFILE, *flags, "-o", spec) == 0
    layout = tmp_path / name
    layout.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="data")
    return layout


def umoci_file(layout: Path, path: str, tmp_path: Path) -> str:
    """``path`` in the image of ``layout`` as umoci unpacks it after skopeo read every
    layer (zstd too) and recompressed it with gzip (Debian's umoci 0.4.7 reads no zstd)."""
    bundle, copy = tmp_path / f"bundle-{layout.name}", tmp_path / f"copy-{layout.name}"
    subprocess.run([require("skopeo"), "copy", "--dest-compress", "--dest-compress-format",
                    "gzip", f"oci:{layout}", f"oci:{copy}:image"],
                   capture_output=True, check=True, timeout=300)
    assert layer_types(raw_manifest(copy)) == [MediaType.OCI_LAYER_GZIP] * len(
        raw_manifest(layout)["layers"])
    subprocess.run([require("umoci"), "unpack", "--image", f"{copy}:image", str(bundle)],
                   capture_output=True, check=True, timeout=300)
    return (bundle / "rootfs" / path).read_text()


def layer_types(manifest: dict[str, Any]) -> list[str]:
    return [layer["mediaType"] for layer in manifest["layers"]]


def test_zstd_output_new_layers_only_unless_forced(store_root: Path, tmp_path: Path) -> None:
    plain = raw_manifest(oci_output(store_root, tmp_path, "gzip"))
    assert layer_types(plain) == [MediaType.OCI_LAYER_GZIP] * 2
    cached = raw_manifest(oci_output(store_root, tmp_path, "cached", "compression=zstd"))
    assert layer_types(cached) == [MediaType.OCI_LAYER_GZIP] * 2  # reused layers keep theirs
    assert cached["config"] == plain["config"]
    layout = oci_output(store_root, tmp_path, "zstd", "compression=zstd",
                        "compression-level=19", "force-compression=false", no_cache=True)
    zstd = raw_manifest(layout)
    assert layer_types(zstd) == [MediaType.OCI_LAYER_GZIP, MediaType.OCI_LAYER_ZSTD]
    assert umoci_file(layout, "made", tmp_path) == "made-here\n"
    forced = oci_output(store_root, tmp_path, "forced", "compression=zstd",
                        "force-compression=true")
    manifest = raw_manifest(forced)
    assert layer_types(manifest) == [MediaType.OCI_LAYER_ZSTD] * 2
    assert manifest["config"] == zstd["config"]
    for layer in manifest["layers"]:
        blob = forced / "blobs" / "sha256" / layer["digest"].split(":")[1]
        assert blob.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert umoci_file(forced, "made", tmp_path) == "made-here\n"
    assert (tmp_path / "bundle-forced/rootfs/bin/busybox").is_file()


def test_uncompressed_and_docker_media_types(store_root: Path, tmp_path: Path) -> None:
    layout = oci_output(store_root, tmp_path, "plain", "compression=uncompressed",
                        "force-compression=true")
    assert layer_types(raw_manifest(layout)) == [MediaType.OCI_LAYER] * 2
    assert umoci_file(layout, "made", tmp_path) == "made-here\n"
    docker_types = raw_manifest(oci_output(store_root, tmp_path, "docker-types",
                                           "oci-mediatypes=false", "compression=gzip"))
    assert docker_types["mediaType"] == MediaType.DOCKER_MANIFEST
    assert docker_types["config"]["mediaType"] == MediaType.DOCKER_CONFIG
    assert layer_types(docker_types) == [MediaType.DOCKER_LAYER_GZIP] * 2


def test_docker_archive_takes_the_attributes_and_loads(store_root: Path, tmp_path: Path,
                                                       dockerd: Dockerd) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    name = f"pybuild-test/out-attrs-{uuid.uuid4().hex[:12]}:1"
    archive = tmp_path / "d.tar"
    assert build(store_root, ctx, OUT_DOCKERFILE, "-o",
                 f"type=docker,dest={archive},name={name},compression=zstd,"
                 "force-compression=true,oci-mediatypes=true") == 0
    docker("load", "-i", str(archive))
    try:
        assert docker("run", "--rm", name, "cat", "/made").stdout == b"made-here\n"
    finally:
        docker("rmi", "-f", name, check=False)


def test_zstd_push_to_a_registry(store_root: Path, tmp_path: Path) -> None:
    require("docker-registry")
    proc = distribution(tmp_path / "dist").start()
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        ref = f"{proc.address}/out/zstd:1"
        assert build(store_root, ctx, OUT_DOCKERFILE, "-o",
                     f"type=registry,name={ref},compression=zstd,force-compression=true") == 0
        raw = subprocess.run([require("skopeo"), "inspect", "--raw", "--tls-verify=false",
                              f"docker://{ref}"], capture_output=True, check=True, timeout=120)
        assert layer_types(json.loads(raw.stdout)) == [MediaType.OCI_LAYER_ZSTD] * 2
        layout = tmp_path / "copied"
        subprocess.run([require("skopeo"), "copy", "--src-tls-verify=false", f"docker://{ref}",
                        f"oci:{layout}:copied"], capture_output=True, check=True, timeout=300)
        assert umoci_file(layout, "made", tmp_path) == "made-here\n"
    finally:
        proc.stop()
