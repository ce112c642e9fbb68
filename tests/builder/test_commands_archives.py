"""``pybuild save`` and ``pybuild load`` against the real peers: docker load/save/run and
skopeo's oci-archive transport."""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builder.test_commands import APP, BASE, GREETING, pybuild, stored_image
from tests.peers import Dockerd, docker, require

ROOT = Path(__file__).resolve().parents[2]


def pybuild_process(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """``pybuild ARGS…`` as its own process (for real pipes and terminals)."""
    code = "import sys; from builder.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT,
                            **kwargs)  # type: ignore[call-overload]


@pytest.fixture
def docker_names() -> Iterator[list[str]]:
    """Image names a test loads into docker; removed from docker afterwards."""
    names: list[str] = []
    yield names
    if names:
        docker("rmi", "-f", *names, check=False)


def stdin_bytes(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    """Make ``data`` this process's standard input."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_docker_loads_and_runs_what_we_save(root: Path, tmp_path: Path, dockerd: Dockerd,
                                            docker_names: list[str]) -> None:
    archive = tmp_path / "images.tar"
    assert pybuild(root, "save", "-o", str(archive), APP, BASE) == 0
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert sorted(tag for entry in manifest for tag in entry["RepoTags"]) == [APP, BASE]
    docker_names += [APP, BASE]
    out = docker("load", "-i", str(archive)).stdout.decode()
    assert f"Loaded image: {APP}" in out and f"Loaded image: {BASE}" in out
    assert docker("run", "--rm", BASE, "echo", "hi").stdout == b"hi\n"
    assert docker("run", "--rm", APP).stdout == b"from the image\nsecond layer\n"
    inspect = json.loads(docker("image", "inspect", APP).stdout)[0]
    assert inspect["Id"] == str(stored_image(root, APP).config.digest)
    assert inspect["Config"]["User"] == "nobody" and inspect["Config"]["WorkingDir"] == "/opt"


def test_save_to_stdout_pipes_into_docker_load(root: Path, dockerd: Dockerd,
                                               docker_names: list[str]) -> None:
    docker_names.append("pybuild-test/cmd-piped:1")
    assert pybuild(root, "tag", BASE, "pybuild-test/cmd-piped:1") == 0
    save = pybuild_process("--root", str(root), "save", "pybuild-test/cmd-piped:1",
                           stdout=subprocess.PIPE)
    load = subprocess.run([require("docker"), "load"], stdin=save.stdout, capture_output=True)
    assert save.stdout is not None
    save.stdout.close()
    assert save.wait() == 0
    assert load.returncode == 0, load.stderr
    assert b"Loaded image: pybuild-test/cmd-piped:1" in load.stdout
    assert docker("run", "--rm", "pybuild-test/cmd-piped:1").stdout.decode() == GREETING + "\n"


def test_save_refuses_a_terminal(root: Path) -> None:
    leader, follower = pty.openpty()
    try:
        proc = pybuild_process("--root", str(root), "save", BASE, stdout=follower,
                               stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 1
    assert err.decode().startswith("error: refusing to write an image archive to a terminal")


@pytest.mark.parametrize("command", [("inspect", APP), ("images",), ("history", APP),
                                     ("save", BASE)])
def test_a_closed_pipe_ends_the_command_quietly(root: Path, command: tuple[str, ...]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = pybuild_process("--root", str(root), *command, stdout=write_end,
                               stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=120)
    finally:
        os.close(write_end)
    assert err.decode() == ""
    assert proc.returncode == 141


def test_pybuild_loads_and_runs_what_docker_saves(root: Path, tmp_path: Path, dockerd: Dockerd,
                                                  docker_names: list[str],
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    ours = tmp_path / "ours.tar"
    assert pybuild(root, "save", "-o", str(ours), APP) == 0
    docker_names.append(APP)
    docker("load", "-i", str(ours))
    theirs = tmp_path / "theirs.tar"
    docker("save", "-o", str(theirs), APP)
    fresh = tmp_path / "fresh"
    capfd.readouterr()
    assert pybuild(fresh, "load", "-i", str(theirs)) == 0
    assert capfd.readouterr().out == f"Loaded image: {APP}\n"
    assert pybuild(fresh, "run", "--rm", APP, "echo hi; id -u") == 0
    assert capfd.readouterr().out == "hi\n65534\n"
    assert stored_image(fresh, APP).image.rootfs == stored_image(root, APP).image.rootfs


def test_skopeo_reads_our_oci_archive(root: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    skopeo = require("skopeo")
    archive = tmp_path / "oci.tar"
    assert pybuild(root, "save", "--format", "oci", "-o", str(archive), APP, BASE) == 0
    app = stored_image(root, APP)
    raw = subprocess.run([skopeo, "inspect", "--raw", f"oci-archive:{archive}:{APP}"],
                         check=True, capture_output=True).stdout
    assert json.loads(raw) == json.loads(
        (root / "content/blobs/sha256" / app.manifest.digest.hex).read_bytes())
    info = json.loads(subprocess.run([skopeo, "inspect", f"oci-archive:{archive}:{BASE}"],
                                     check=True, capture_output=True).stdout)
    assert info["Digest"] == str(stored_image(root, BASE).manifest.digest)
    assert len(info["Layers"]) == 1
    fresh = tmp_path / "fresh"
    assert pybuild(fresh, "load", "-i", str(archive)) == 0
    assert capsys.readouterr().out == f"Loaded image: {APP}\nLoaded image: {BASE}\n"
    assert stored_image(fresh, APP).manifest == app.manifest


def test_pybuild_loads_an_oci_archive_skopeo_wrote(root: Path, tmp_path: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    skopeo = require("skopeo")
    ours = tmp_path / "ours.tar"
    assert pybuild(root, "save", "--format", "oci", "-o", str(ours), BASE) == 0
    theirs = tmp_path / "theirs.tar"
    subprocess.run([skopeo, "copy", f"oci-archive:{ours}",
                    f"oci-archive:{theirs}:pybuild-test/from-skopeo:1"],
                   check=True, capture_output=True)
    fresh = tmp_path / "fresh"
    capfd.readouterr()
    assert pybuild(fresh, "load", "-q", "-i", str(theirs)) == 0
    assert capfd.readouterr().out == "Loaded image: pybuild-test/from-skopeo:1\n"
    assert pybuild(fresh, "run", "pybuild-test/from-skopeo:1") == 0
    assert capfd.readouterr().out == GREETING + "\n"


def test_load_reads_a_compressed_archive_from_stdin(root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "base.tar"
    assert pybuild(root, "save", "-o", str(archive), BASE) == 0
    stdin_bytes(monkeypatch, gzip.compress(archive.read_bytes(), compresslevel=1))
    fresh = tmp_path / "fresh"
    assert pybuild(fresh, "load") == 0
    assert capsys.readouterr().out == f"Loaded image: {BASE}\n"
    assert list((fresh / "tmp").iterdir()) == []
    assert stored_image(fresh, BASE).manifest == stored_image(root, BASE).manifest


def test_an_archive_without_names_loads_by_id(root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    base = stored_image(root, BASE)
    archive = tmp_path / "by-id.tar"
    assert pybuild(root, "save", "-o", str(archive), base.config.digest.hex[:12]) == 0
    fresh = tmp_path / "fresh"
    assert pybuild(fresh, "load", "-i", str(archive)) == 0
    assert capsys.readouterr().out == f"Loaded image ID: {base.config.digest}\n"


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(("files", "message"), [
    (None, "not a tar archive"),
    ({"hello.txt": b"hi"}, "not an image archive"),
    ({"manifest.json": b"[{]"}, "manifest.json is not valid JSON"),
    ({"manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]).encode()},
     "the archive has no file 'c.json'"),
    ({"oci-layout": b'{"imageLayoutVersion": "9"}', "index.json": b"{}"},
     "unsupported imageLayoutVersion '9'"),
    ({"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
      "index.json": json.dumps({"schemaVersion": 2, "manifests": [{
          "mediaType": "application/vnd.oci.image.manifest.v1+json",
          "digest": "sha256:" + "a" * 64, "size": 10}]}).encode()},
     "the archive has no blob sha256:aaaa"),
])
def test_load_rejects_bad_archives(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   files: dict[str, bytes] | None, message: str) -> None:
    path = tmp_path / "bad.tar"
    if files is None:
        path.write_bytes(b"this is not a tar file" * 100)
    else:
        _tar(path, files)
    assert pybuild(tmp_path / "store", "load", "-i", str(path)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_save_into_a_missing_directory_fails_cleanly(root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "save", "-o", str(tmp_path / "no/such/dir.tar"), BASE) == 1
    assert capsys.readouterr().err.startswith("error: cannot write ")
