"""``pybuild build --ssh`` with ``RUN --mount=type=ssh``, against a real ``ssh-agent``:
``ssh-add -l`` inside RUN lists the key, the key never reaches the store, and the errors of
a missing agent or a bad flag."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.builder.test_build import build, image_tree
from tests.peers import docker, require


def _tools(ctx: Path) -> None:
    """``ssh-add`` and the host libraries it needs, run in a RUN through the host's loader
    (the busybox base has neither)."""
    tools = ctx / "sshtools"
    tools.mkdir()
    add = require("ssh-add")
    shutil.copy(add, tools / "ssh-add")
    out = subprocess.run(["ldd", add], capture_output=True, text=True, check=True).stdout
    for path in re.findall(r"(/\S+\.so[.\d]*)", out):
        shutil.copy(path, tools / Path(path).name)


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    """A new ed25519 key and its fingerprint (as ``ssh-add -l`` prints it)."""
    path = tmp_path / "keys" / "id_ed25519"
    path.parent.mkdir()
    subprocess.run([require("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "build-key",
                    "-f", str(path)], check=True)
    fingerprint = subprocess.run([require("ssh-keygen"), "-lf", f"{path}.pub"],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    return path, fingerprint


@pytest.fixture
def agent(tmp_path: Path, key: tuple[Path, str]) -> Iterator[Path]:
    """A real ssh-agent holding ``key``; its socket."""
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen([require("ssh-agent"), "-D", "-a", str(sock)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(500):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.01)
        subprocess.run([require("ssh-add"), "-q", str(key[0])], check=True,
                       env={**os.environ, "SSH_AUTH_SOCK": str(sock)})
        yield sock
    finally:
        proc.terminate()
        proc.wait(10)


LIST = ("RUN --mount=type=bind,source=sshtools,target=/t {mount} "
        "/t/ld-linux-x86-64.so.2 --library-path /t /t/ssh-add -l > {out}; "
        "echo \"sock=$SSH_AUTH_SOCK\" >> {out}\n")


def _secret_free(root: Path, key: Path) -> None:
    """No file below ``root`` holds the private key's body."""
    body = "".join(key.read_text().splitlines()[1:-1]).encode()[:40]
    found = subprocess.run(["grep", "-rlF", body.decode(), str(root)], capture_output=True)
    assert found.returncode == 1, found.stdout


def test_the_default_agent_is_reachable_and_leaves_no_trace(
        store_root: Path, tmp_path: Path, agent: Path, key: tuple[Path, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tools(ctx)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    dockerfile = "FROM busybox\n" + LIST.format(mount="--mount=type=ssh", out="/listed")
    assert build(store_root, ctx, dockerfile, "--ssh", "default", "-t", "ssh:1") == 0
    with image_tree(store_root, "ssh:1") as (tree, _):
        listed = (tree / "listed").read_text()
        assert key[1] in listed and "build-key" in listed
        assert "sock=/run/buildkit/ssh_agent.0" in listed
        assert not (tree / "run/buildkit").exists()
    _secret_free(store_root, key[0])


def test_key_files_get_a_private_agent_and_mounts_take_owner_and_target(
        store_root: Path, tmp_path: Path, key: tuple[Path, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tools(ctx)
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    mount = ("--mount=type=ssh,id=deploy,target=/agent.sock,uid=1000,mode=0600 "
             "--mount=type=ssh,id=deploy")
    dockerfile = ("FROM busybox\nUSER 1000\n" + LIST.format(mount=mount, out="/tmp/listed")
                  + "RUN --mount=type=ssh,id=deploy ls -ln /run/buildkit > /tmp/socks\n")
    assert build(store_root, ctx, dockerfile, "--ssh", f"deploy={key[0]}", "-t", "ssh:2") == 0
    with image_tree(store_root, "ssh:2") as (tree, _):
        listed = (tree / "tmp/listed").read_text()
        assert key[1] in listed and "sock=/agent.sock" in listed
        socks = (tree / "tmp/socks").read_text()
        assert re.search(r"^srw------- +1 0 +0 .* ssh_agent\.0$", socks, re.M), socks
    _secret_free(store_root, key[0])


def test_a_mount_without_its_agent_names_the_line_and_flag(
        store_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\nRUN true\nRUN --mount=type=ssh true\n") == 1
    err = capsys.readouterr().err
    assert "Dockerfile:3" in err and "needs the SSH agent 'default'" in err and \
        "pass --ssh default" in err and "Traceback" not in err
    optional = "FROM busybox\nRUN --mount=type=ssh,required=false echo \"$SSH_AUTH_SOCK\" > /s\n"
    assert build(store_root, ctx, optional, "-t", "ssh:3") == 0
    with image_tree(store_root, "ssh:3") as (tree, _):
        assert (tree / "s").read_text() == "/run/buildkit/ssh_agent.0\n"


@pytest.mark.parametrize(("flag", "message"), [
    ("default", "--ssh 'default': SSH_AUTH_SOCK is not set"),
    ("x=/nowhere/key", "--ssh 'x=/nowhere/key': /nowhere/key: No such file or directory"),
    ("=a", "--ssh '=a': expected default or ID"),
])
def test_bad_ssh_flags(store_root: Path, tmp_path: Path, flag: str, message: str,
                       capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\n", "--ssh", flag) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_encrypted_key_is_refused_by_name(store_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "locked"
    subprocess.run([require("ssh-keygen"), "-q", "-t", "ed25519", "-N", "secret-pass",
                    "-f", str(path)], check=True)
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\nRUN --mount=type=ssh,id=k true\n",
                 "--ssh", f"k={path}") == 1
    err = capsys.readouterr().err
    assert f"--ssh k: cannot load key {path}" in err and "Traceback" not in err


def test_the_same_as_docker_buildkit(store_root: Path, tmp_path: Path, agent: Path,
                                     key: tuple[Path, str], docker_bases: object,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker's BuildKit (docker.io's) lists the same key at the same socket path."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tools(ctx)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent))
    dockerfile = ("FROM busybox\n" + LIST.format(mount="--mount=type=ssh", out="/listed")
                  + "RUN --mount=type=ssh,id=deploy,target=/deploy.sock,required=false "
                  "echo \"$SSH_AUTH_SOCK\" > /second\n")
    assert build(store_root, ctx, dockerfile, "--ssh", "default", "-t", "ssh:peer") == 0
    out = tmp_path / "docker-out"
    docker("build", "--ssh", "default", "--no-cache", "-o", f"type=local,dest={out}",
           str(ctx))
    with image_tree(store_root, "ssh:peer") as (tree, _):
        for name in ("listed", "second"):
            assert (tree / name).read_text() == (out / name).read_text(), name
    assert key[1] in (out / "listed").read_text()
