"""``pybuild daemon``: commands run in a resident process's forks give what they give in
their own process (the same image, output, exit status and errors), take the client's
standard streams, directory and environment, pass Ctrl-C on, and fall back to running in
their own process when the daemon is gone or runs other code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.deadline import time_limit
from tests.builder.examples import pybuild_command

TIMEOUT = 180
DOCKERFILE = ("FROM busybox\n"
              "ARG WHO=nobody\n"
              "COPY hello.txt /hello.txt\n"
              "RUN echo \"built by $WHO in $(pwd)\" > /by && cat /hello.txt\n")


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a case that runs longer than TIMEOUT seconds instead of hanging the session."""
    with time_limit(TIMEOUT):
        yield


@pytest.fixture
def daemon_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a client of a daemon started for this test (stopped after)."""
    env = {k: v for k, v in os.environ.items() if k != "PYBUILD_NO_DAEMON"}
    env["PYBUILD_DAEMON_DIR"] = str(tmp_path / "daemon")
    started = pybuild(["daemon", "start"], env)
    assert started.returncode == 0, started.stderr
    yield env
    pybuild(["daemon", "stop"], env)


def pybuild(argv: list[str], env: dict[str, str], *, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*pybuild_command(), *argv], env=env, cwd=cwd, input=input,
                          capture_output=True, text=True, timeout=TIMEOUT)


def daemon_pid(env: dict[str, str]) -> int:
    return int((Path(env["PYBUILD_DAEMON_DIR"]) / "daemon.pid").read_text())


def children_of(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("hello from the context\n")
    return ctx


def test_a_build_in_the_daemon_gives_the_same_image(daemon_env: dict[str, str], ctx: Path,
                                                    store_root: Path, tmp_path: Path) -> None:
    pid = daemon_pid(daemon_env)
    env = {**daemon_env, "SOURCE_DATE_EPOCH": "0"}
    args = ["build", "--progress", "plain", "--build-arg", "WHO=daemon", "-t", "app:1",
            "--iidfile", "iid", str(ctx)]
    second = tmp_path / "second-store"
    shutil.copytree(store_root, second, symlinks=True)
    (tmp_path / "in-process").mkdir()
    (tmp_path / "in-daemon").mkdir()
    alone = pybuild(["--root", str(store_root), *args],
                    {**env, "PYBUILD_NO_DAEMON": "1"}, cwd=tmp_path / "in-process")
    assert alone.returncode == 0, alone.stderr
    helped = pybuild(["--root", str(second), "build", "--help"], env)
    assert helped.returncode == 0 and "--build-arg" in helped.stdout
    through = pybuild(["--root", str(second), *args], env, cwd=tmp_path / "in-daemon")
    assert through.returncode == 0, through.stderr
    assert "hello from the context" in through.stderr + through.stdout
    assert (tmp_path / "in-daemon" / "iid").read_text() == (
        tmp_path / "in-process" / "iid").read_text()
    assert daemon_pid(daemon_env) == pid  # still the same daemon: the fingerprint matched
    log = (Path(daemon_env["PYBUILD_DAEMON_DIR"]) / "daemon.log").read_text()
    assert log.count(" runs build\n") == 2, log  # --help and the build; not the first


def test_errors_streams_and_exit_status(daemon_env: dict[str, str], store_root: Path,
                                        tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text("FROM busybox\nRUN true\nFROB x\n")
    done = pybuild(["--root", str(store_root), "build", str(bad)], daemon_env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "error: Dockerfile:3: unknown instruction: FROB"
    assert "Traceback" not in done.stderr
    piped = pybuild(["--root", str(store_root), "build", "--progress", "plain", "-q",
                     "-f", "-", str(bad)], daemon_env,
                    input="FROM busybox\nRUN echo from-stdin > /x\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("sha256:")
    usage = pybuild(["--root", str(store_root), "build", "--bogus", str(bad)], daemon_env)
    assert usage.returncode == 2 and "unrecognized arguments: --bogus" in usage.stderr


def test_ctrl_c_reaches_the_build(daemon_env: dict[str, str], store_root: Path,
                                  tmp_path: Path) -> None:
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "Dockerfile").write_text("FROM busybox\nRUN echo started && sleep 60\n")
    proc = subprocess.Popen([*pybuild_command(), "--root", str(store_root), "build",
                             "--progress", "plain", str(slow)], env=daemon_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "started" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "pybuild: interrupted" in err
    deadline = time.monotonic() + 30
    while children_of(daemon_pid(daemon_env)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not children_of(daemon_pid(daemon_env)), "the build's process outlived Ctrl-C"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(store_root) not in mounts


def test_stale_daemon_and_no_daemon(daemon_env: dict[str, str], store_root: Path,
                                    ctx: Path, tmp_path: Path) -> None:
    pid = daemon_pid(daemon_env)
    stopped = pybuild(["daemon", "stop"], daemon_env)
    assert stopped.returncode == 0 and f"stopped (pid {pid})" in stopped.stdout
    assert pybuild(["daemon", "status"], daemon_env).returncode == 3
    done = pybuild(["--root", str(store_root), "build", "-q", str(ctx)], daemon_env)
    assert done.returncode == 0, done.stderr  # no daemon: in its own process
    again = pybuild(["daemon", "start"], daemon_env)
    assert again.returncode == 0, again.stderr
    pid = daemon_pid(daemon_env)
    request = Path(daemon_env["PYBUILD_DAEMON_DIR"]) / "daemon.sock"
    script = ("import socket, sys\n"
              "from builder.daemonclient import send, receive\n"
              "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
              "send(s, {'argv': ['images'], 'env': {}, 'cwd': '/', 'umask': 18,"
              " 'fingerprint': 'other code'}, [0, 1, 2])\n"
              "print(receive(s))\n")
    stale = subprocess.run([sys.executable, "-c", script, str(request)], capture_output=True,
                           text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert stale.stdout.strip() == "None", stale.stderr  # refused, no process forked
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "a daemon with other code kept running"
    assert not request.exists()
