"""The escape corpus of tests/builder/test_sandbox_hardening.py run through a real rootless
``pybuild build``: an ordinary user (with subordinate ids) builds one Dockerfile whose RUN
steps each try one escape, as root of the image and as uid 1000, and the host is checked
unchanged afterwards. Resource limits and the network modes of a rootless build as this
cgroup v1 host allows them.

Where an outcome differs from the one as root, docs/sandbox.md says why.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from layerstore.snapshots.mount import mountinfo
from tests.builder.bases import BUSYBOX, BaseImages
from tests.builder.escapecorpus import (
    CORPUS,
    CORPUS_IDS,
    HostState,
    compile_escape,
    escape_command,
    escape_keyring_exists,
)
from tests.builder.examples import pybuild_command, run
from tests.builder.rootlessuser import RootlessUser, UserSetupFailed
from tests.peers import require

#: Seconds any one command of these tests may take (a build of the whole corpus included).
TIMEOUT = 300
#: The users of the image the corpus runs as.
SANDBOX_USERS = ("0:0", "1000:1000")

#: The attempts whose outcome differs between a rootless build and a build as root (the
#: result file of each: the user inside and the attempt), as (as root, rootless);
#: docs/sandbox.md says why. Every other attempt is refused the same way in both.
DIFFERENCES = {
    # mknod of a device node: the user namespace refuses it before nodev is reached
    "0-blockdev-disk": ("BLOCKED EACCES", "BLOCKED EPERM"),
    "0-kmsg": ("BLOCKED EACCES", "BLOCKED EPERM"),
    # /proc/sys files belong to the host's root, whom the user namespace does not map: the
    # permission check fails before the read-only mount is reached
    "0-write-_proc_sys_kernel_printk_ratelimit": ("BLOCKED EROFS", "BLOCKED EACCES"),
}


@pytest.fixture(scope="module")
def user() -> Iterator[RootlessUser]:
    """A new ordinary user with subordinate ids, removed afterwards."""
    for tool in ("useradd", "usermod", "userdel", "setpriv", "newuidmap", "newgidmap"):
        require(tool)
    try:
        made = RootlessUser.create("pbesc")
    except UserSetupFailed as exc:
        pytest.fail(f"cannot set up a rootless user: {exc}")
    yield made
    made.remove()


@pytest.fixture(scope="module")
def busybox(user: RootlessUser, base_images: BaseImages) -> str:
    """busybox, loaded into the user's default store (as the user)."""
    base = next(b for b in base_images.images if b.name == BUSYBOX)
    user.pybuild("load", "-i", str(user.share(base.archive)), timeout=TIMEOUT)
    return base.name


def _context(user: RootlessUser, dockerfile: str, *files: Path) -> Path:
    """A new build context readable by everyone, holding ``files``."""
    ctx = user.base / "contexts" / uuid.uuid4().hex[:8]
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    for f in files:
        (ctx / f.name).write_bytes(f.read_bytes())
    for p in (ctx.parent, ctx, *ctx.iterdir()):
        p.chmod(0o755)
    return ctx


def _result_name(user: str, attempt_id: str) -> str:
    """The file an attempt's line goes to: ``0-mount-proc``, ``1000-chroot-marker``."""
    name = re.sub(r"[{}]", "", attempt_id.strip("-").replace("/", "_"))
    return f"{user.split(':')[0]}-{name}"


def _user_sees_no_escape_keyring(user: RootlessUser) -> bool:
    """Neither root nor the user (who alone may view its keys) sees the named keyring."""
    keys = user.run(["cat", "/proc/keys"], timeout=TIMEOUT).stdout.decode(errors="replace")
    return not escape_keyring_exists() and "escape-keyring" not in keys


def _corpus_dockerfile(marker: Path, sleeper: int) -> str:
    """One RUN step per attempt and user; each writes the attempt's line to /results."""
    lines = ["FROM busybox", "COPY escape /escape", "RUN mkdir -m 1777 /results"]
    for who in SANDBOX_USERS:
        lines.append(f"USER {who}")
        for (attempt, args), name in zip(CORPUS, CORPUS_IDS, strict=True):
            command = escape_command(attempt, args, marker=marker, sleeper=sleeper)
            lines.append(f"RUN {command} > /results/{_result_name(who, name)}")
    lines += ["FROM scratch", "COPY --from=0 /results /"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def escape_binary(user: RootlessUser) -> Path:
    """The escape binary, built where the user can read it."""
    return compile_escape(user.workdir("escape-binary"))


def _results(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in directory.iterdir()}


def test_escape_corpus_is_contained_rootless(user: RootlessUser, busybox: str,
                                             escape_binary: Path, store_root: Path,
                                             tmp_path: Path) -> None:
    """The corpus built rootless and, for comparison, as root: every attempt refused in
    both, the differences exactly :data:`DIFFERENCES`, the host unchanged."""
    marker = user.base / f"host-only-marker-{uuid.uuid4().hex[:6]}"
    marker.write_text("host")
    marker.chmod(0o644)
    # a process of the same user outside the build: the one a rootless RUN could reach
    sleeper = subprocess.Popen(user.argv(["sleep", "600"]))
    try:
        before = HostState.now(user.base)
        ctx = _context(user, _corpus_dockerfile(marker, sleeper.pid), escape_binary)
        out = user.workdir(f"results-{uuid.uuid4().hex[:6]}")
        user.pybuild("build", "-q", "--no-cache", "--output", f"type=local,dest={out}",
                     str(ctx), timeout=TIMEOUT)
        rootless = _results(out)
        assert HostState.now(user.base) == before
        assert sleeper.poll() is None  # neither traced nor killed
        assert marker.read_text() == "host"
        assert _user_sees_no_escape_keyring(user)
        run([*pybuild_command(), "--root", str(store_root), "build", "-q", "--no-cache",
             "--output", f"type=local,dest={tmp_path / 'as-root'}", str(ctx)],
            timeout=TIMEOUT, env={"PYBUILD_NO_DAEMON": "1"})
        as_root = _results(tmp_path / "as-root")
        assert HostState.now(user.base) == before
        assert sleeper.poll() is None
        assert marker.read_text() == "host"
        assert _user_sees_no_escape_keyring(user)
    finally:
        sleeper.kill()
        sleeper.wait()
    names = {_result_name(who, name) for who in SANDBOX_USERS for name in CORPUS_IDS}
    assert set(rootless) == set(as_root) == names
    for name in sorted(names):
        assert rootless[name].startswith("BLOCKED "), (name, rootless[name])
        assert as_root[name].startswith("BLOCKED "), (name, as_root[name])
    differing = {name: (as_root[name], rootless[name]) for name in names
                 if as_root[name] != rootless[name]}
    assert differing == DIFFERENCES


# -- resource limits and networks, rootless ------------------------------------------------


#: The error of any cgroup limit asked for by an ordinary user on this cgroup v1 host.
V1_REFUSAL = re.compile(
    r"^error: --memory 64m: cannot create the cgroup /sys/fs/cgroup/memory/pybuild/\S+: "
    r"Permission denied: on a cgroup v1 host only root can set resource limits \(build as "
    r"root, or on a cgroup v2 host with delegation\)$")


def _one_line_error(proc: subprocess.CompletedProcess[bytes]) -> str:
    err = proc.stderr.decode(errors="replace")
    lines = err.strip().splitlines()
    assert proc.returncode == 1, (proc.returncode, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _on_cgroup_v1() -> None:
    if any(m.fstype == "cgroup2" and m.mount_point == "/sys/fs/cgroup" for m in mountinfo()):
        pytest.fail("this test checks the cgroup v1 host this project runs on")


def test_memory_limit_rootless_on_cgroup_v1_is_one_clear_line(user: RootlessUser,
                                                             busybox: str) -> None:
    """No cgroup can be made rootless on v1: the build and the run stop with the one-line
    error before any RUN step runs, never without the limit."""
    _on_cgroup_v1()
    ctx = _context(user, "FROM busybox\nRUN echo ran-$((6 * 7))\n")
    tag = f"rootless/limits-{uuid.uuid4().hex[:6]}:1"
    proc = user.pybuild("build", "--progress", "plain", "--no-cache", "--memory", "64m", "-t",
                        tag, str(ctx), check=False, timeout=TIMEOUT)
    assert b"ran-42" not in proc.stdout + proc.stderr
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    assert proc.returncode == 1 and lines, proc.stderr.decode(errors="replace")
    assert V1_REFUSAL.match(lines[-1]), lines[-1]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert "Traceback" not in proc.stderr.decode(errors="replace")
    quiet = user.pybuild("build", "-q", "--no-cache", "--memory", "64m", "-t", tag, str(ctx),
                         check=False, timeout=TIMEOUT)
    assert V1_REFUSAL.match(_one_line_error(quiet))
    assert user.pybuild("inspect", tag, check=False, timeout=TIMEOUT).returncode != 0
    ran = user.pybuild("run", "--rm", "--memory", "64m", busybox, "echo", "ran",
                       check=False, timeout=TIMEOUT)
    assert V1_REFUSAL.match(_one_line_error(ran))
    assert ran.stdout == b""


def test_memory_limit_from_the_config_file_rootless_is_refused_too(user: RootlessUser,
                                                                    busybox: str) -> None:
    _on_cgroup_v1()
    config = user.base / f"limits-{uuid.uuid4().hex[:6]}.toml"
    config.write_text('[limits]\nmemory = "64m"\n')
    config.chmod(0o644)
    ctx = _context(user, "FROM busybox\nRUN echo ran-without-limits\n")
    proc = user.pybuild("build", "-q", "--no-cache", str(ctx), check=False, timeout=TIMEOUT,
                        env={"PYBUILD_CONFIG": str(config)})
    line = _one_line_error(proc)
    assert "cannot create the cgroup /sys/fs/cgroup/memory/pybuild/" in line, line
    assert "on a cgroup v1 host only root can set resource limits" in line, line


def _interfaces(text: str) -> list[str]:
    """The interface names of a /proc/net/dev listing."""
    return [line.split(":")[0].strip() for line in text.splitlines()[2:] if ":" in line]


def test_network_modes_rootless(user: RootlessUser, busybox: str) -> None:
    """A rootless RUN with no network sees loopback only; with the default network it runs
    and has an interface besides loopback."""
    ctx = _context(user, "FROM busybox\n"
                         "RUN cat /proc/net/dev > /default\n"
                         "RUN --network=none cat /proc/net/dev > /none\n"
                         "RUN --network=none ip link set lo up && ping -c 1 -W 5 127.0.0.1 "
                         "> /dev/null && echo ok > /lo\n"
                         "FROM scratch\nCOPY --from=0 /default /none /lo /\n")
    out = user.workdir(f"network-{uuid.uuid4().hex[:6]}")
    user.pybuild("build", "-q", "--no-cache", "--output", f"type=local,dest={out}", str(ctx),
                 timeout=TIMEOUT)
    assert _interfaces((out / "none").read_text()) == ["lo"]
    assert (out / "lo").read_text() == "ok\n"
    default = _interfaces((out / "default").read_text())
    assert "lo" in default and len(default) >= 2, default
    flag = user.workdir(f"network-flag-{uuid.uuid4().hex[:6]}")
    user.pybuild("build", "-q", "--no-cache", "--network", "none", "--output",
                 f"type=local,dest={flag}", str(ctx), timeout=TIMEOUT)
    assert _interfaces((flag / "default").read_text()) == ["lo"]
    ran = user.pybuild("run", "--rm", "--network", "none", busybox, "cat", "/proc/net/dev",
                       timeout=TIMEOUT)
    assert _interfaces(ran.stdout.decode()) == ["lo"]
    ran = user.pybuild("run", "--rm", busybox, "cat", "/proc/net/dev", timeout=TIMEOUT)
    assert "lo" in _interfaces(ran.stdout.decode())
