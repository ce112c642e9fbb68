"""NamespaceExecutor against a real busybox rootfs: namespaces, mounts, users, cleanup."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from builder.errors import ExecError
from builder.executor import BindMount, NamespaceExecutor, RunResult, RunSpec
from builder.executor.protocol import TmpfsMount
from layerstore.content.local import LocalStore
from layerstore.diff import write_upper
from layerstore.snapshots.mount import mountinfo
from layerstore.snapshots.overlay import OverlaySnapshotter
from layerstore.snapshots.session import snapshot_session

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def rootfs(busybox_rootfs: Path, tmp_path: Path) -> Path:
    """A private copy of the busybox rootfs for one test."""
    dest = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    return dest


def sh(script: str, **kwargs: object) -> RunSpec:
    """A ``sh -c`` spec with just PATH in the environment."""
    return RunSpec(("sh", "-c", script), (PATH,), **kwargs)  # type: ignore[arg-type]


def run(rootfs: Path, spec: RunSpec, timeout: float = 30) -> tuple[RunResult, bytes]:
    """Run and return the result with the full output."""
    chunks: list[bytes] = []
    result = NamespaceExecutor(output=chunks.append, timeout=timeout).run(spec, rootfs)
    return result, b"".join(chunks)


#: Where a Docker engine and other test runs on this machine mount and unmount at any time.
ELSEWHERE = ("/var/lib/docker/", "/run/docker/", "/run/netns/", "/run/containerd/",
             tempfile.gettempdir().rstrip("/") + "/")


def mount_table(root: Path) -> list[tuple[int, str]]:
    """The host's mounts a leak from a run under ``root`` would show in: those under
    ``root`` and those outside the places other programs change meanwhile."""
    inside = f"{str(root).rstrip('/')}/"
    return [(m.mount_id, m.mount_point) for m in mountinfo()
            if m.mount_point.startswith(inside) or not m.mount_point.startswith(ELSEWHERE)]


def processes_with(marker: str) -> list[int]:
    """PIDs (host view) whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.parametrize(("script", "code"), [("true", 0), ("exit 3", 3), ("kill -9 $$", 137)])
def test_exit_code_comes_back(rootfs: Path, script: str, code: int) -> None:
    result, _ = run(rootfs, sh(script))
    assert result.exit_code == code


def test_missing_command_is_127(rootfs: Path) -> None:
    result, out = run(rootfs, RunSpec(("no-such-command",), (PATH,)))
    assert result.exit_code == 127
    assert b"no-such-command" in result.output_tail
    assert result.output_tail == out


def test_output_streams_and_tail_keeps_the_end(rootfs: Path) -> None:
    result, out = run(rootfs, sh("i=0; while [ $i -lt 2000 ]; do echo line$i; i=$((i+1)); done;"
                                 " echo err >&2"))
    assert out.startswith(b"line0\n")
    assert out.endswith(b"line1999\nerr\n")
    assert len(result.output_tail) == 4096
    assert out.endswith(result.output_tail)


def test_env_is_exactly_the_spec(rootfs: Path) -> None:
    spec = RunSpec(("env",), (PATH, "FOO=bar baz", "EMPTY="))
    result, out = run(rootfs, spec)
    assert result.exit_code == 0
    assert sorted(out.decode().splitlines()) == sorted([PATH, "FOO=bar baz", "EMPTY="])


def test_cwd_is_created_and_entered(rootfs: Path) -> None:
    result, out = run(rootfs, sh("pwd", cwd="/work/deep/dir"))
    assert (result.exit_code, out) == (0, b"/work/deep/dir\n")
    assert (rootfs / "work/deep/dir").is_dir()


def test_user_is_dropped(rootfs: Path) -> None:
    result, out = run(rootfs, sh("id -u; id -g; id -G; touch /root/x", user="1000:1000"))
    assert result.exit_code != 0
    assert out.splitlines()[:3] == [b"1000", b"1000", b"1000"]


def test_hostname_and_etc_files(rootfs: Path) -> None:
    result, out = run(rootfs, sh("hostname; cat /etc/hostname; grep -c myhost /etc/hosts",
                                 hostname="myhost"))
    assert (result.exit_code, out) == (0, b"myhost\nmyhost\n1\n")
    assert not (rootfs / "etc/hosts").exists()
    assert not (rootfs / "etc/resolv.conf").exists()
    assert (rootfs / "etc/hostname").read_text() == "busybox\n"


def test_new_pid_namespace_with_our_init(rootfs: Path) -> None:
    result, out = run(rootfs, sh("echo $$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'"))
    assert result.exit_code == 0
    pid, init, count = out.decode().split()
    assert (pid, init) == ("2", "pybuild-init")
    assert int(count) <= 4  # init, sh, ls, grep


def test_orphans_are_reaped(rootfs: Path) -> None:
    script = "(sleep 0.2 &); sleep 1; cat /proc/[0-9]*/stat"
    result, out = run(rootfs, sh(script))
    assert result.exit_code == 0
    states = [line.rpartition(")")[2].split()[0] for line in out.decode().splitlines()]
    assert states
    assert "Z" not in states


def test_sigterm_to_init_reaches_the_command(rootfs: Path) -> None:
    result, out = run(rootfs, sh("trap 'echo got-term; exit 7' TERM; kill -TERM 1; sleep 1; "
                                 "echo late"))
    assert (result.exit_code, out) == (7, b"got-term\n")


def test_network_none_has_only_loopback(rootfs: Path) -> None:
    result, out = run(rootfs, sh("cat /proc/net/dev; ip link", network="none"))
    assert result.exit_code == 0
    lines = out.decode().splitlines()
    devs = [line.split(":")[0].strip() for line in lines[2:] if line.startswith(" ")
            and "link/" not in line]
    links = re.findall(r"^\d+: (\S+): <([^>]*)>", out.decode(), re.MULTILINE)
    assert devs == ["lo"]
    assert [name for name, _ in links] == ["lo"]
    assert "UP" in links[0][1].split(",")


def test_host_network_sees_host_interfaces(rootfs: Path) -> None:
    host = sorted(line.split(":")[0].strip()
                  for line in Path("/proc/net/dev").read_text().splitlines()[2:])
    result, out = run(rootfs, sh("cat /proc/net/dev", network="host"))
    inside = sorted(line.split(":")[0].strip() for line in out.decode().splitlines()[2:])
    assert result.exit_code == 0
    assert inside == host


def test_default_network_has_its_own_interfaces(rootfs: Path) -> None:
    """The default network is a namespace of its own: loopback and the user-mode stack's
    tap0, none of the host's interfaces (tests/builder/test_network.py has the rest)."""
    host = {line.split(":")[0].strip()
            for line in Path("/proc/net/dev").read_text().splitlines()[2:]} - {"lo"}
    result, out = run(rootfs, sh("cat /proc/net/dev", network="default"))
    inside = sorted(line.split(":")[0].strip() for line in out.decode().splitlines()[2:])
    assert result.exit_code == 0
    assert inside == ["lo", "tap0"]
    assert not host & set(inside)


def test_sys_read_only_and_dev_usable(rootfs: Path) -> None:
    result, out = run(rootfs, sh("mkdir /sys/x && echo bad; echo ok > /dev/null && echo null-ok;"
                                 " head -c 16 /dev/urandom | wc -c; head -c 4 /dev/zero | wc -c;"
                                 " ls /proc/self/fd/ > /dev/null && echo proc-ok"))
    assert result.exit_code == 0
    assert out.splitlines()[-4:] == [b"null-ok", b"16", b"4", b"proc-ok"]
    assert b"bad" not in out


def test_extra_bind_mount_is_read_only_and_removed(rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_text("hello")
    spec = sh("cat /mnt/in/data; touch /mnt/in/new",
              extra_mounts=(BindMount(str(src), "/mnt/in"),))
    result, out = run(rootfs, spec)
    assert result.exit_code != 0
    assert out.startswith(b"hello")
    assert not (src / "new").exists()
    assert not (rootfs / "mnt").exists()


def test_tmpfs_mount_is_a_tmpfs_of_the_given_size_and_leaves_nothing(rootfs: Path) -> None:
    before = mount_table(rootfs.parent)
    spec = sh("grep ' /mnt/scratch ' /proc/mounts; echo data > /mnt/scratch/f; cat /mnt/scratch/f;"
              " stat -c %a /mnt/scratch", extra_mounts=(TmpfsMount("/mnt/scratch", 1 << 20),))
    result, out = run(rootfs, spec)
    assert result.exit_code == 0, out
    mount_line, data, mode = out.decode().splitlines()
    _, point, fstype, options, *_ = mount_line.split()
    assert (point, fstype) == ("/mnt/scratch", "tmpfs")
    assert "size=1024k" in options.split(",")
    assert "nosuid" in options.split(",")
    assert (data, mode) == ("data", "1777")
    assert mount_table(rootfs.parent) == before
    assert not (rootfs / "mnt").exists()


def test_tmpfs_without_size_uses_the_kernel_default(rootfs: Path) -> None:
    result, out = run(rootfs, sh("grep ' /cache tmpfs ' /proc/mounts",
                                 extra_mounts=(TmpfsMount("/cache"),)))
    assert result.exit_code == 0
    assert out.startswith(b"tmpfs /cache tmpfs ")


def test_file_bind_mount_binds_one_file(rootfs: Path, tmp_path: Path) -> None:
    src = tmp_path / "token"
    src.write_text("s3cret")
    src.chmod(0o400)
    before = mount_table(rootfs.parent)
    spec = sh("cat /etc/app/token; echo; stat -c '%a %F' /etc/app/token; echo x > /etc/app/token",
              extra_mounts=(BindMount(str(src), "/etc/app/token"),))
    result, out = run(rootfs, spec)
    assert result.exit_code != 0
    assert out.decode().splitlines()[:2] == ["s3cret", "400 regular file"]
    assert src.read_text() == "s3cret"
    assert mount_table(rootfs.parent) == before
    assert not (rootfs / "etc/app").exists()
    assert (rootfs / "etc/passwd").exists()


def test_file_bind_over_an_existing_file_leaves_it_as_it_was(rootfs: Path,
                                                              tmp_path: Path) -> None:
    src = tmp_path / "passwd"
    src.write_text("override\n")
    original = (rootfs / "etc/passwd").read_text()
    result, out = run(rootfs, sh("cat /etc/passwd",
                                 extra_mounts=(BindMount(str(src), "/etc/passwd", False),)))
    assert (result.exit_code, out) == (0, b"override\n")
    assert (rootfs / "etc/passwd").read_text() == original


def test_mount_inside_another_mount_gets_its_mount_point_there(rootfs: Path,
                                                               tmp_path: Path) -> None:
    src = tmp_path / "key"
    src.write_text("k")
    before = mount_table(rootfs.parent)
    mounts = (BindMount(str(src), "/run/secrets/key"), TmpfsMount("/run"))
    result, out = run(rootfs, sh("cat /run/secrets/key; grep -c ' /run' /proc/mounts",
                                 extra_mounts=mounts))
    assert (result.exit_code, out) == (0, b"k2\n")
    assert mount_table(rootfs.parent) == before
    assert not (rootfs / "run").exists()


def test_mount_under_dev_is_made_in_the_dev_tmpfs(rootfs: Path, tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\necho from-pipe\n")
    script.chmod(0o755)
    result, out = run(rootfs, RunSpec(("/dev/pipes/EOF",), (PATH,),
                                      extra_mounts=(BindMount(str(script), "/dev/pipes/EOF"),)))
    assert (result.exit_code, out) == (0, b"from-pipe\n")
    assert sorted(p.name for p in (rootfs / "dev").iterdir()) == []


def test_setup_failure_is_125_and_cleaned_up(rootfs: Path, tmp_path: Path) -> None:
    before = mount_table(rootfs.parent)
    spec = sh("echo never", extra_mounts=(BindMount(str(tmp_path / "missing"), "/opt/x"),))
    result, out = run(rootfs, spec)
    assert result.exit_code == 125
    assert b"sandbox setup failed" in out
    assert b"never" not in out
    assert mount_table(rootfs.parent) == before
    assert not (rootfs / "opt").exists()


def test_default_output_goes_to_stdout(rootfs: Path, capfd: pytest.CaptureFixture[str]) -> None:
    result = NamespaceExecutor(timeout=30).run(sh("echo to-stdout"), rootfs)
    assert result == RunResult(0, b"to-stdout\n")
    assert "to-stdout" in capfd.readouterr().out


@pytest.mark.parametrize("script", ["true", "exit 1", "no-such-command"])
def test_mountinfo_unchanged(rootfs: Path, script: str) -> None:
    before = mount_table(rootfs.parent)
    run(rootfs, sh(script))
    assert mount_table(rootfs.parent) == before


def test_timeout_kills_everything(rootfs: Path) -> None:
    marker = "31415"
    before = mount_table(rootfs.parent)
    result, _ = run(rootfs, sh(f"sleep {marker} & sleep {marker}"), timeout=1)
    assert result.exit_code == 137
    assert mount_table(rootfs.parent) == before
    assert processes_with(f"sleep\0{marker}") == []
    assert not (rootfs / "etc/hosts").exists()


def test_keyboard_interrupt_kills_and_cleans_up(rootfs: Path) -> None:
    marker = "27182"
    before = mount_table(rootfs.parent)

    def interrupt(_data: bytes) -> None:
        raise KeyboardInterrupt

    executor = NamespaceExecutor(output=interrupt, timeout=30)
    with pytest.raises(KeyboardInterrupt):
        executor.run(sh(f"echo started; sleep {marker}"), rootfs)
    assert mount_table(rootfs.parent) == before
    assert processes_with(f"sleep\0{marker}") == []
    assert not (rootfs / "etc/resolv.conf").exists()


def test_bad_user_is_refused(rootfs: Path) -> None:
    with pytest.raises(Exception, match="numeric"):
        NamespaceExecutor(timeout=10).run(sh("true", user="nobody"), rootfs)


def test_exec_error_message() -> None:
    err = ExecError(2, "make all", b"boom\n")
    assert (err.exit_code, err.tail) == (2, b"boom\n")
    assert "make all" in str(err)
    assert "exit code 2" in str(err)


def layer_names(store: LocalStore, layer_digest: object) -> list[str]:
    with store.reader(layer_digest) as f:  # type: ignore[arg-type]
        data = gzip.decompress(f.read())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def test_through_the_snapshotter_only_command_writes_reach_the_layer(
    busybox_rootfs: Path, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path / "store")
    before = mount_table(tmp_path)
    with OverlaySnapshotter(tmp_path / "snapshots", sync=False) as sn:
        with snapshot_session(sn, "base-active") as base:
            shutil.copytree(busybox_rootfs, base.upperdir, symlinks=True, dirs_exist_ok=True)
            base.commit("base")
        with snapshot_session(sn, "run", "base") as session:
            with session.mounted() as root:
                result, _ = run(root, sh("echo made > /root/out; cat /etc/hosts"
                                         " /etc/resolv.conf /etc/hostname > /dev/null;"
                                         " ls /proc /sys /dev > /dev/null", network="none"))
            assert result.exit_code == 0
            layer = write_upper(session.upperdir, store)
        names = layer_names(store, layer.descriptor.digest)
    assert mount_table(tmp_path) == before
    assert "root/out" in names
    leaked = [n for n in names if n.startswith(("proc/", "sys/", "dev/"))
              or n in ("etc/hosts", "etc/resolv.conf", "etc/hostname")]
    assert leaked == []
