"""The hardened RUN sandbox: an escape corpus that must fail or stay contained (and leave the
host unchanged), side by side with ``docker run`` on the same image, and
``RUN --security=insecure`` behind the ``security.insecure`` entitlement."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builder import entitlements
from builder.cli import main
from builder.errors import DockerfileError
from builder.executor import NamespaceExecutor, RunResult, RunSpec
from builder.executor.hardening import DEFAULT_MASK
from builder.frontend.convert import plan
from builder.frontend.instructions import parse_dockerfile
from builder.graph.compile import compile_graph
from builder.graph.ops import Exec, _fields
from builder.graph.render import render
from tests.builder.bases import BUSYBOX, BaseImages
from tests.builder.escapecorpus import (
    CORPUS,
    CORPUS_IDS,
    SYSCTL,
    HostState,
    compile_escape,
    escape_command,
    escape_keyring_exists,
    host_mounts,
)
from tests.builder.test_build import build, image_tree
from tests.builder.test_graph import AMD64, TableImages, compile_text
from tests.peers import DOCKER, require

PATH = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
STATUS_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")


@pytest.fixture(scope="module")
def escape_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/builder/escape/escape.c, linked statically so it runs in any rootfs."""
    return compile_escape(tmp_path_factory.mktemp("escape"))


@pytest.fixture
def rootfs(busybox_rootfs: Path, tmp_path: Path, escape_binary: Path) -> Path:
    """A private copy of the busybox rootfs with ``/escape`` in it."""
    dest = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, dest, symlinks=True)
    shutil.copy(escape_binary, dest / "escape")
    return dest


def run(rootfs: Path, script: str, **kwargs: object) -> tuple[RunResult, str]:
    chunks: list[bytes] = []
    spec = RunSpec(("sh", "-c", script), (PATH,), **kwargs)  # type: ignore[arg-type]
    result = NamespaceExecutor(output=chunks.append, timeout=60).run(spec, rootfs)
    return result, b"".join(chunks).decode(errors="replace")


def status(text: str) -> dict[str, str]:
    """The capability, no_new_privs and seccomp lines of /proc/PID/status."""
    found = dict(re.findall(r"^(\w+):\s+(\S+)$", text, re.M))
    return {k: found[k] for k in STATUS_FIELDS if k in found}


@pytest.mark.parametrize("user", ["0:0", "1000:1000"])
@pytest.mark.parametrize(("attempt", "args"), CORPUS, ids=CORPUS_IDS)
def test_escape_corpus_is_contained(rootfs: Path, tmp_path: Path, attempt: str, args: str,
                                    user: str) -> None:
    marker = tmp_path / "host-only-marker"
    marker.write_text("host")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        before = HostState.now(tmp_path)
        command = escape_command(attempt, args, marker=marker, sleeper=sleeper.pid)
        result, out = run(rootfs, command, user=user)
        assert result.exit_code == 0, out
        assert out.startswith("BLOCKED "), out
        assert "ESCAPED" not in out
        assert HostState.now(tmp_path) == before
        assert sleeper.poll() is None  # neither traced nor killed
        assert marker.read_text() == "host"
        assert not escape_keyring_exists()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(("attempt", "expected"), [
    ("mount tmpfs", "BLOCKED EPERM"),  # seccomp: mount needs CAP_SYS_ADMIN's rule
    ("module", "BLOCKED EPERM"),
    ("userns", "BLOCKED EPERM"),
    ("keyctl", "BLOCKED EPERM"),
    (f"write {SYSCTL} 9", "BLOCKED EROFS"),  # docker's read-only /proc/sys
    ("kmsg", "BLOCKED EACCES"),  # not in /dev; a node made for it is on a nodev mount
    ("ptrace-init", "BLOCKED EPERM"),  # PID 1 holds capabilities the command lacks
])
def test_escapes_fail_for_the_docker_reasons(rootfs: Path, attempt: str, expected: str
                                             ) -> None:
    result, out = run(rootfs, f"/escape {attempt}")
    assert (result.exit_code, out.strip()) == (0, expected)


def test_root_and_user_get_dockers_capabilities_and_seccomp(rootfs: Path) -> None:
    mask = f"{DEFAULT_MASK:016x}"
    assert mask == "00000000a80425fb"
    _, out = run(rootfs, "cat /proc/self/status")
    assert status(out) == {"CapInh": "0" * 16, "CapPrm": mask, "CapEff": mask, "CapBnd": mask,
                           "CapAmb": "0" * 16, "NoNewPrivs": "0", "Seccomp": "2"}
    _, out = run(rootfs, "cat /proc/self/status", user="1000:1000")
    assert status(out) == {"CapInh": "0" * 16, "CapPrm": "0" * 16, "CapEff": "0" * 16,
                           "CapBnd": mask, "CapAmb": "0" * 16, "NoNewPrivs": "0",
                           "Seccomp": "2"}


def test_root_is_pivoted_not_chrooted(rootfs: Path) -> None:
    result, out = run(rootfs, "grep -c . /proc/self/mountinfo; awk '$5 == \"/\"' "
                              "/proc/self/mountinfo | wc -l; ls /proc/1/root/ 2>&1; true")
    assert result.exit_code == 0
    total, roots, *init_root = out.splitlines()
    assert roots.strip() == "1"  # only the rootfs: the host's root is mounted nowhere
    assert int(total) < 40
    # /proc/1/root is not open to the command: PID 1 holds capabilities it lacks
    assert init_root == ["ls: /proc/1/root/: Permission denied"]


def test_masked_and_read_only_paths(rootfs: Path) -> None:
    _, out = run(rootfs, "cat /proc/keys /proc/timer_list 2>&1 | wc -c; ls /sys/firmware "
                         "| wc -l; echo 1 2>&1 >/proc/sys/vm/overcommit_memory; "
                         "mount -o remount,rw /proc/sys 2>&1; grep -c ' /proc/sys ro,' "
                         "/proc/self/mountinfo")
    lines = [line.strip() for line in out.splitlines()]
    assert lines[:2] == ["0", "0"], out
    assert "Read-only file system" in lines[2]
    assert "permission denied" in lines[3].lower()
    assert lines[4] == "1"


def test_insecure_keeps_every_capability_and_no_filter(rootfs: Path) -> None:
    host = status(Path("/proc/self/status").read_text())
    before = host_mounts(rootfs.parent)
    result, out = run(rootfs, "cat /proc/self/status; mkdir -p /tmp/m; mount -t tmpfs t /tmp/m "
                              "&& echo MOUNTED; cat /proc/keys >/dev/null && echo KEYS",
                      security="insecure")
    assert result.exit_code == 0, out
    got = status(out)
    assert got["CapBnd"] == got["CapEff"] == host["CapBnd"]
    assert got["Seccomp"] == "0"
    assert "MOUNTED" in out and "KEYS" in out
    assert host_mounts(rootfs.parent) == before


# -- RUN --security=insecure in the Dockerfile ----------------------------------------------

@pytest.mark.unit
def test_insecure_needs_the_entitlement_at_its_line() -> None:
    with pytest.raises(DockerfileError) as info:
        compile_text("FROM busybox\nRUN true\nRUN --security=insecure id\n")
    assert info.value.line == 3
    assert "--allow security.insecure" in str(info.value)
    assert str(info.value).startswith("Dockerfile:3: RUN --security=insecure")
    with pytest.raises(DockerfileError, match="expected sandbox or insecure"):
        compile_text("FROM busybox\nRUN --security=privileged id\n")


@pytest.mark.unit
def test_insecure_with_the_entitlement_is_an_insecure_exec() -> None:
    dockerfile = parse_dockerfile("FROM busybox\nRUN --security=insecure id\n")
    p = plan(dockerfile, build_args={}, target=None, build_platform=AMD64,
             target_platform=AMD64)
    graph = compile_graph(p, build_args={}, network="default", images=TableImages(),
                          allow=entitlements.parse(["security.insecure"]))
    ops = [s.op for st in graph.stages.values() for s in st.steps if isinstance(s.op, Exec)]
    assert [op.security for op in ops] == ["insecure"]
    assert "network=default security=insecure" in render(graph)


@pytest.mark.unit
def test_sandbox_keeps_the_digest_of_a_plain_run() -> None:
    plain = compile_text("FROM busybox\nRUN id\n")
    explicit = compile_text("FROM busybox\nRUN --security=sandbox id\n")
    ops = [s.op for g in (plain, explicit) for st in g.stages.values() for s in st.steps
           if isinstance(s.op, Exec)]
    assert len(ops) == 2
    assert ops[0].digest == ops[1].digest
    assert "security" not in _fields(ops[0])
    assert "security" in _fields(Exec(ops[0].base, ("id",), (), "/", "", "default",
                                      security="insecure"))


def test_build_with_and_without_the_entitlement(store_root: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBUILD_CONFIG", str(tmp_path / "none.toml"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    dockerfile = ("FROM busybox\nRUN grep CapEff /proc/self/status > /sandboxed\n"
                  "RUN --security=insecure grep -E 'CapEff|Seccomp:' /proc/self/status"
                  " > /insecure\n")
    assert build(store_root, ctx, dockerfile, "-t", "ins:1") == 1
    err = capsys.readouterr().err
    assert "Dockerfile:3: RUN --security=insecure needs the security.insecure entitlement: " \
           "pass --allow security.insecure" in err
    assert "Traceback" not in err
    assert build(store_root, ctx, dockerfile, "-t", "ins:1", "--allow",
                 "security.insecure") == 0
    host = status(Path("/proc/self/status").read_text())
    with image_tree(store_root, "ins:1") as (tree, _):
        assert (tree / "sandboxed").read_text().split() == ["CapEff:", f"{DEFAULT_MASK:016x}"]
        assert status((tree / "insecure").read_text()) == {"CapEff": host["CapBnd"],
                                                           "Seccomp": "0"}
    config = tmp_path / "pybuild.toml"
    config.write_text('insecure-entitlements = ["security.insecure"]\n')
    monkeypatch.setenv("PYBUILD_CONFIG", str(config))
    assert build(store_root, ctx, dockerfile + "RUN true\n", "-t", "ins:2") == 0


def test_pybuild_run_is_hardened(store_root: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(store_root), "run", "--rm", "busybox", "sh", "-c",
                 "grep -E '^(CapEff|Seccomp):' /proc/self/status; mount -t tmpfs t /tmp"]
                ) != 0
    out = capfd.readouterr().out
    assert status(out) == {"CapEff": f"{DEFAULT_MASK:016x}", "Seccomp": "2"}


# -- side by side with docker run -------------------------------------------------------------

PROBE = ("cat /proc/self/status; echo ---; cat /proc/self/mountinfo; echo ---; "
         "stat -c '%N|%F|%a|%t:%T' /dev/* /dev/pts /dev/shm /dev/mqueue")

#: Mount points only docker has: the cgroup filesystems (the resource-limit work mounts
#: those) — see docs/sandbox.md.
DOCKER_ONLY = re.compile(r"^/sys/fs/cgroup(/.*)?$")
#: Mount points only we have: the device nodes, bind mounts of the host's nodes where docker
#: makes new nodes in its /dev tmpfs.
OURS_ONLY = {f"/dev/{n}" for n in ("null", "zero", "full", "random", "urandom", "tty")}


def probe_sections(text: str) -> tuple[dict[str, str], dict[str, tuple[str, str]], list[str]]:
    """status fields; mount point -> (fstype, ro|rw); the /dev listing."""
    status_text, mounts_text, dev_text = text.split("---\n")
    mounts = {}
    for line in mounts_text.splitlines():
        fields = line.split()
        sep = fields.index("-")
        mounts[fields[4]] = (fields[sep + 1], fields[5].split(",")[0])
    return status(status_text), mounts, sorted(dev_text.splitlines())


@pytest.mark.parametrize("user", ["0:0", "1000:1000"])
def test_matches_docker_run(docker_bases: BaseImages, rootfs: Path, user: str) -> None:
    require("docker")
    # by ID: other test runs on this engine may re-tag busybox:latest meanwhile
    image = next(b.image_id for b in docker_bases.images if b.name == BUSYBOX)
    proc = subprocess.run([DOCKER, "run", "--rm", "-u", user, image, "sh", "-c", PROBE],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    theirs = probe_sections(proc.stdout.decode())
    result, out = run(rootfs, PROBE, user=user)
    assert result.exit_code == 0, out
    ours = probe_sections(out)
    assert ours[0] == theirs[0]
    assert ours[2] == theirs[2]
    their_mounts = {k: v for k, v in theirs[1].items() if not DOCKER_ONLY.match(k)}
    our_mounts = {k: v for k, v in ours[1].items() if k not in OURS_ONLY}
    assert set(our_mounts) == set(their_mounts)
    for point, (fstype, mode) in their_mounts.items():
        assert our_mounts[point][1] == mode, point
        if point not in ("/", "/proc/keys", "/proc/timer_list", "/etc/hosts", "/etc/hostname",
                         "/etc/resolv.conf"):  # files bound from where each keeps them
            assert our_mounts[point][0] == fstype, point
