"""Multi-platform builds: ``--platform linux/amd64,linux/arm64`` makes one OCI index; arm64 RUN
steps execute under Debian's qemu-user-static (``uname -m`` inside the built image says
``aarch64``); ``$BUILDPLATFORM`` stages run natively and once; the index pushes to a registry
and Docker runs its arm64 image.

The base is ``busybox:latest`` as an index of Debian's busybox-static for amd64 and for arm64
(see :mod:`tests.builder.multiplatform_bases`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from builder import platforms_qemu
from builder.cli import main
from builder.store import BuildStore
from layerstore.assembly import host_architecture, load_image
from layerstore.oci import Index, MediaType
from layerstore.walk import load_manifest, read_small
from registry.testing.processes import distribution
from tests.builder.bases import BaseImageError
from tests.builder.multiplatform_bases import seed_multiplatform_busybox
from tests.peers import Dockerd, docker, require

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def amd64_host() -> None:
    """These tests emulate arm64 on an amd64 host; on any other host they fail, saying so."""
    if host_architecture() != "amd64":
        pytest.fail(f"the arm64 emulation tests need an amd64 host, not "
                    f"{host_architecture()}")

BOTH = "linux/amd64,linux/arm64"
DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM busybox AS tools
RUN head -c 16 /dev/urandom | od -An -tx1 > /stamp && uname -m > /tools-arch
FROM busybox
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM
COPY --from=tools /stamp /tools-arch /
RUN uname -m > /arch && \
    echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$BUILDPLATFORM" > /args
CMD ["cat", "/arch"]
"""


@pytest.fixture(scope="module")
def mp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding ``busybox:latest`` as an amd64 + arm64 index."""
    require("busybox")
    require("qemu-aarch64-static")
    work = tmp_path_factory.mktemp("multiplatform")
    try:
        seed_multiplatform_busybox(work / "store", work / "work")
    except BaseImageError as exc:
        pytest.fail(f"cannot make the arm64 busybox base: {exc}")
    return work / "store"


def pybuild(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def build(root: Path, context: Path, dockerfile: str, *args: str) -> int:
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    return pybuild(root, "build", "--progress=plain", *args, str(context))


def run_output(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert pybuild(root, "run", "--rm", *args) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def built(mp_root: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``DOCKERFILE`` built for amd64 and arm64 as ``multi:1``."""
    ctx = tmp_path_factory.mktemp("ctx")
    assert build(mp_root, ctx, DOCKERFILE, "--platform", BOTH, "-t", "multi:1") == 0
    return "multi:1"


def test_the_build_is_one_index_of_both_platforms(mp_root: Path, built: str) -> None:
    with BuildStore.open(mp_root) as store:
        target = store.images.get(built).target
        assert target.media_type == MediaType.OCI_INDEX
        raw = json.loads(read_small(store.content, target))
        index = load_manifest(store.content, target)
        assert isinstance(index, Index)
        assert [(m.media_type, m.platform.os, m.platform.architecture, m.platform.variant)
                for m in index.manifests if m.platform] == [
            (MediaType.OCI_MANIFEST, "linux", "amd64", None),
            (MediaType.OCI_MANIFEST, "linux", "arm64", None)]
        for desc in index.manifests:
            image = load_image(store.content, desc).image
            assert desc.platform is not None
            assert (image.os, image.architecture) == ("linux", desc.platform.architecture)
    assert raw["schemaVersion"] == 2 and raw["mediaType"] == MediaType.OCI_INDEX


def test_uname_inside_each_platform_image(mp_root: Path, built: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    arm = run_output(mp_root, capsys, "--platform", "linux/arm64", built,
                     "sh", "-c", "cat /arch; uname -m; cat /args")
    assert arm.splitlines() == ["aarch64", "aarch64",
                                "linux/arm64|linux|arm64||linux/amd64"]
    amd = run_output(mp_root, capsys, "--platform", "linux/amd64", built,
                     "sh", "-c", "cat /arch; uname -m; cat /args")
    assert amd.splitlines() == ["x86_64", "x86_64", "linux/amd64|linux|amd64||linux/amd64"]


def test_the_buildplatform_stage_runs_natively_and_once(mp_root: Path, built: str,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    arm = run_output(mp_root, capsys, "--platform", "linux/arm64", built,
                     "cat", "/tools-arch", "/stamp")
    amd = run_output(mp_root, capsys, "--platform", "linux/amd64", built,
                     "cat", "/tools-arch", "/stamp")
    assert arm.splitlines()[0] == "x86_64"
    assert arm == amd  # the random stamp: made by one run, shared by both platforms


def test_images_and_inspect_show_the_platforms(mp_root: Path, built: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert pybuild(mp_root, "images", "--platforms", "multi") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "PLATFORMS" in lines[0] and "linux/amd64,linux/arm64" in lines[1]
    assert pybuild(mp_root, "inspect", built) == 0
    doc = json.loads(capsys.readouterr().out)[0]
    assert doc["Platforms"] == ["linux/amd64", "linux/arm64"]
    assert doc["Architecture"] == "amd64" and doc["Index"].startswith("sha256:")


def test_target_variant_and_a_scratch_image_per_platform(mp_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    dockerfile = (
        "FROM --platform=$BUILDPLATFORM busybox AS args\n"
        "ARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM BUILDARCH\n"
        "RUN echo \"$TARGETPLATFORM $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM "
        "$BUILDARCH\" > /args\n"
        "FROM scratch\nCOPY --from=args /args /args\n")
    out = tmp_path / "out"
    assert build(mp_root, tmp_path / "ctx", dockerfile, "--platform",
                 "linux/arm,linux/arm64/v8,linux/x86_64", "-t", "variant:1",
                 "-o", f"type=local,dest={out}") == 0
    assert sorted(p.name for p in out.iterdir()) == ["linux_amd64", "linux_arm64",
                                                     "linux_arm_v7"]
    assert (out / "linux_arm_v7/args").read_text() == \
        "linux/arm/v7 arm [v7] linux/amd64 amd64\n"
    assert (out / "linux_arm64/args").read_text() == "linux/arm64 arm64 [] linux/amd64 amd64\n"
    with BuildStore.open(mp_root) as store:
        index = load_manifest(store.content, store.images.get("variant:1").target)
        assert isinstance(index, Index)
        assert [str(m.platform) for m in index.manifests] == [
            "linux/arm/v7", "linux/arm64", "linux/amd64"]
        arm = load_image(store.content, index.manifests[0]).image
        assert (arm.architecture, arm.variant) == ("arm", "v7")


def test_oci_output_holds_the_index(mp_root: Path, built: str, tmp_path: Path) -> None:
    archive = tmp_path / "multi.tar"
    assert build(mp_root, tmp_path / "ctx", DOCKERFILE, "--platform", BOTH,
                 "-o", f"type=oci,dest={archive}") == 0
    with tarfile.open(archive) as tar:
        top = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        entry = top["manifests"][0]
        assert entry["mediaType"] == MediaType.OCI_INDEX
        hexpart = entry["digest"].split(":")[1]
        index = json.load(tar.extractfile(f"blobs/sha256/{hexpart}"))  # type: ignore[arg-type]
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]


@pytest.mark.parametrize(("args", "message"), [
    (("--platform", BOTH, "-o", "type=docker,dest=x.tar"),
     "error: --output type=docker: a docker archive holds one platform, but --platform names "
     "2 (linux/amd64,linux/arm64)"),
    (("--platform", "linux/amd64,linux/armv9"),
     "error: --platform linux/armv9: cannot build for linux/armv9: unknown architecture "
     "'armv9'"),
    (("--platform", "linux/amd64,foo"), "error: --platform foo: invalid platform 'foo'"),
])
def test_bad_input_is_one_clear_line(mp_root: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     args: tuple[str, ...], message: str) -> None:
    capsys.readouterr()
    assert build(mp_root, tmp_path / "ctx", DOCKERFILE, *args, "-t", "bad:1") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    with BuildStore.open(mp_root) as store:
        assert "bad:1" not in [r.name for r in store.images.list()]


def test_run_platform_the_image_lacks(mp_root: Path, built: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert pybuild(mp_root, "run", "--platform", "linux/s390x", built, "true") == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: --platform linux/s390x: image multi:1 has no image for it (it has "
                   "linux/amd64, linux/arm64)"]


def test_missing_qemu_names_the_package(mp_root: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(platforms_qemu, "QEMU_DIR", tmp_path / "no-qemu")
    monkeypatch.setattr(platforms_qemu, "_ready", set())
    capsys.readouterr()
    assert build(mp_root, tmp_path / "ctx", "FROM busybox\nRUN true\n",
                 "--platform", "linux/arm64", "-t", "noqemu:1") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "Dockerfile:1: stage stage-0: RUN for linux/arm64 needs an " \
        "emulator" in err[0] and "(apt-get install qemu-user-static)" in err[0], err


def test_binfmt_handler_is_registered_with_f_when_missing(mp_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    entry = platforms_qemu.BINFMT_DIR / "qemu-aarch64"
    if entry.exists():
        entry.write_text("-1")
    monkeypatch.setattr(platforms_qemu, "_ready", set())
    assert build(mp_root, tmp_path / "ctx", "FROM busybox\nRUN uname -m > /arch\n",
                 "--platform", "linux/arm64", "-t", "binfmt:1") == 0
    found = platforms_qemu.handler("qemu-aarch64")
    assert found is not None and found.enabled and "F" in found.flags
    assert run_output(mp_root, capsys, "--platform", "linux/arm64", "binfmt:1",
                      "cat", "/arch") == "aarch64\n"


def test_push_then_docker_runs_the_arm64_image(mp_root: Path, built: str, tmp_path: Path,
                                               dockerd: Dockerd) -> None:
    require("docker-registry")
    proc = distribution(tmp_path / "dist").start()
    ref = f"{proc.address}/multiplat-test/multi:{uuid.uuid4().hex[:8]}"
    try:
        assert build(mp_root, tmp_path / "ctx", DOCKERFILE, "--platform", BOTH,
                     "-t", ref, "--push") == 0
        raw = subprocess.run([require("skopeo"), "inspect", "--raw", "--tls-verify=false",
                              f"docker://{ref}"], capture_output=True, check=True, timeout=120)
        index = json.loads(raw.stdout)
        assert index["mediaType"] == MediaType.OCI_INDEX
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64", "arm64"]
        docker("pull", "--platform", "linux/arm64", ref, timeout=300)
        try:
            out = docker("run", "--rm", "--network", "none", "--platform", "linux/arm64", ref,
                         "sh", "-c", "uname -m; cat /arch /args", timeout=300).stdout
            assert out.decode().splitlines() == ["aarch64", "aarch64",
                                                 "linux/arm64|linux|arm64||linux/amd64"]
        finally:
            docker("rmi", "-f", ref, check=False)
    finally:
        proc.stop()
        shutil.rmtree(tmp_path / "dist", ignore_errors=True)


def test_a_base_for_another_platform_is_a_warning(mp_root: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with BuildStore.open(mp_root) as store:
        index = load_manifest(store.content, store.images.get("busybox:latest").target)
        assert isinstance(index, Index)
        store.images.put("amd64only:1", index.manifests[0])
    capsys.readouterr()
    assert build(mp_root, tmp_path / "ctx", "FROM amd64only:1\nENV A=1\n",
                 "--platform", "linux/arm64", "-t", "warned:1") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("WARNING")]
    assert warnings == ['WARNING: InvalidBaseImagePlatform: Base image amd64only:1 was pulled '
                        'with platform "linux/amd64", expected "linux/arm64" for current build '
                        '(Dockerfile:1)']


def test_a_base_index_on_a_registry_resolves_per_platform(mp_root: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    require("docker-registry")
    proc = distribution(tmp_path / "dist").start()
    base = f"{proc.address}/multiplat-test/busybox:1"
    try:
        assert pybuild(mp_root, "tag", "busybox:latest", base) == 0
        assert pybuild(mp_root, "push", base) == 0
        fresh = tmp_path / "fresh"
        assert build(fresh, tmp_path / "ctx", f"FROM {base}\nRUN uname -m > /arch\n",
                     "--platform", "linux/arm64,linux/amd64", "-t", "pulled:1") == 0
    finally:
        proc.stop()
    assert run_output(fresh, capsys, "--platform", "linux/arm64", "pulled:1",
                      "cat", "/arch") == "aarch64\n"
    assert run_output(fresh, capsys, "--platform", "linux/amd64", "pulled:1",
                      "cat", "/arch") == "x86_64\n"


def test_a_shared_stage_is_built_and_shown_once(mp_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert build(mp_root, tmp_path / "ctx", DOCKERFILE, "--no-cache", "--platform", BOTH,
                 "-t", "shared:1") == 0
    err = capsys.readouterr().err.splitlines()
    tools = {line.split()[0] for line in err if "RUN head -c 16 /dev/urandom" in line}
    assert len(tools) == 1, err
    apps = {line.split()[0] for line in err if "RUN uname -m > /arch" in line}
    assert len(apps) == 2, err
    assert any("[linux/arm64 stage-1 3/3] RUN uname -m" in line for line in err)


def test_binfmt_misc_is_mounted_when_it_is_not(tmp_path: Path) -> None:
    """In a mount namespace of its own without binfmt_misc, pybuild mounts it and finds the
    handler (the host's mount is left alone)."""
    unshare = require("unshare")
    script = ("from builder.platforms import parse_one\n"
              "from builder.platforms_qemu import ensure_emulation, handler\n"
              "ensure_emulation(parse_one('linux/arm64', '--platform'))\n"
              "found = handler('qemu-aarch64')\n"
              "print(found is not None and found.enabled and 'F' in found.flags)\n")
    proc = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c",
         'umount /proc/sys/fs/binfmt_misc 2>/dev/null; '
         'test ! -e /proc/sys/fs/binfmt_misc/register && "$0" -c "$1" && '
         'grep -c "^binfmt_misc /proc/sys/fs/binfmt_misc " /proc/self/mounts',
         sys.executable, script], capture_output=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().split() == ["True", "1"]


def test_annotations_of_the_index_and_its_manifests(mp_root: Path, tmp_path: Path) -> None:
    assert build(mp_root, tmp_path / "ctx", "FROM busybox\nCMD [\"sh\"]\n", "--platform", BOTH,
                 "-t", "annotated:1", "--annotation", "index:team=build",
                 "--annotation", "org.opencontainers.image.source=https://example.com/app",
                 "--annotation", "index,manifest:both=yes") == 0
    with BuildStore.open(mp_root) as store:
        target = store.images.get("annotated:1").target
        index = load_manifest(store.content, target)
        assert isinstance(index, Index)
        assert index.annotations == {"team": "build", "both": "yes"}
        for desc in index.manifests:
            manifest = load_manifest(store.content, desc)
            assert manifest.annotations == {  # type: ignore[union-attr]
                "org.opencontainers.image.source": "https://example.com/app", "both": "yes"}


def test_attestations_of_a_two_platform_build(mp_root: Path, tmp_path: Path) -> None:
    """One attestation manifest per platform, about that platform's image, after the images
    (BuildKit's layout); the index keeps its annotations."""
    assert build(mp_root, tmp_path / "ctx", "FROM busybox\nRUN echo hi > /hi\n", "--platform",
                 BOTH, "-t", "attested:1", "--sbom=true", "--provenance=mode=max",
                 "--annotation", "index:team=build") == 0
    with BuildStore.open(mp_root) as store:
        index = load_manifest(store.content, store.images.get("attested:1").target)
        assert isinstance(index, Index) and index.annotations == {"team": "build"}
        images, attestations = index.manifests[:2], index.manifests[2:]
        assert [m.platform.architecture for m in images] == ["amd64", "arm64"]  # type: ignore
        assert len(attestations) == 2
        for image, attestation in zip(images, attestations, strict=True):
            assert attestation.annotations == {
                "vnd.docker.reference.digest": str(image.digest),
                "vnd.docker.reference.type": "attestation-manifest"}
            manifest = load_manifest(store.content, attestation)
            assert manifest.subject.digest == image.digest  # type: ignore[union-attr]
            predicates = [layer.annotations["in-toto.io/predicate-type"]  # type: ignore
                          for layer in manifest.layers]  # type: ignore[union-attr]
            assert predicates == ["https://spdx.dev/Document",
                                  "https://slsa.dev/provenance/v1"]
