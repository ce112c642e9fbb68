"""docker's container verbs: ``run`` without ``--rm`` keeps a container; ``ps``, ``rm``,
``commit``, ``export``, ``import`` and ``cp``, checked side by side with the Docker engine
(the same sequence gives the same files and config), and the committed and imported images
pushed to a registry and run by docker."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.changes import apply_changes
from builder.cli import main
from builder.containerstore import ContainerStore, remove_container
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.content.local import LocalStore
from layerstore.docker_archive import ArchiveImage, write_docker_archive
from layerstore.oci import ImageConfig
from layerstore.snapshots.mount import mounts_under
from layerstore.snapshots.snapshotter import Kind
from registry.testing.processes import RegistryProcess, ours
from tests.builder.bases import busybox_image
from tests.builder.examples import pybuild_command
from tests.builder.rootlessuser import RootlessUser, UserSetupFailed
from tests.peers import Dockerd, docker, require

SCRIPT = "echo hello > /made; rm /bin/vi; mkdir -p /d/e; echo x > /d/e/f; ln -s /made /d/link"
CHANGES = ('CMD ["sh"]', "ENV A=1 B=\"two words\"", "EXPOSE 80/tcp 53/udp", "LABEL a=b",
           "WORKDIR /tmp", "WORKDIR sub", "USER nobody", "VOLUME /data",
           "ONBUILD RUN echo hi", 'ENTRYPOINT ["/bin/sh", "-c"]')
CONFIG_KEYS = ("Cmd", "Entrypoint", "Env", "ExposedPorts", "Labels", "OnBuild", "User",
               "Volumes", "WorkingDir")
#: What docker's init layer adds to every container (pybuild's sandbox mounts these files
#: without writing them into the container).
DOCKER_INIT = {".dockerenv", "dev/console", "dev/pts", "dev/shm", "etc/hosts", "etc/mtab",
               "etc/resolv.conf", "etc/hostname"}
WAIT = 60.0


@dataclass(frozen=True)
class Base:
    """The busybox image under one name in docker and in a pybuild store."""

    name: str
    root: Path
    archive: Path


@pytest.fixture(scope="module")
def base(dockerd: Dockerd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    work = tmp_path_factory.mktemp("verbs-base")
    content = LocalStore(work / "content")
    name = f"pybuild-test/verbs-busybox:{uuid.uuid4().hex[:8]}"
    archive = work / "busybox.tar"
    write_docker_archive(archive, content, [ArchiveImage(busybox_image(content, work), (name,))])
    docker("load", "-i", str(archive))
    root = work / "store"
    assert main(["--root", str(root), "load", "-i", str(archive)]) == 0
    try:
        yield Base(name, root, archive)
    finally:
        docker("rmi", name, check=False)


@pytest.fixture
def root(base: Base, tmp_path: Path) -> Iterator[Path]:
    """A store of its own holding the base image (its containers removed afterwards)."""
    import shutil

    dest = tmp_path / "store"
    shutil.copytree(base.root, dest, symlinks=True)
    yield dest
    with BuildStore.open(dest) as store:
        for container in ContainerStore(store).list():
            remove_container(store, container, force=True)


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Docker containers and images a test made (removed afterwards)."""
    made: list[str] = []
    yield made
    for name in made:
        docker("rm", "-f", name, check=False)
        docker("rmi", name, check=False)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryProcess]:
    proc = ours(tmp_path_factory.mktemp("verbs-registry") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def pybuild(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def out(root: Path, capfd: pytest.CaptureFixture[str], *args: str) -> str:
    capfd.readouterr()
    status = pybuild(root, *args)
    got = capfd.readouterr()
    assert status == 0, got.err
    return got.out


def members(path: Path) -> dict[str, tuple[str, int, int, str, bytes]]:
    """A tar's entries: name (no ``./`` or trailing ``/``) → type, mode, size, link target,
    content."""
    entries = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            name = m.name.removeprefix("./").rstrip("/")
            data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            entries[name] = (m.type.decode(), m.mode & 0o7777, m.size, m.linkname, data)
    return entries


def docker_config(ref: str) -> dict[str, object]:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", ref)
                        .stdout)
    return {k: config.get(k) or None for k in CONFIG_KEYS}


def our_config(root: Path, ref: str, capfd: pytest.CaptureFixture[str]) -> dict[str, object]:
    config = json.loads(out(root, capfd, "inspect", "--format", "{{json .Config}}", ref))
    return {k: config.get(k) or None for k in CONFIG_KEYS}


def last_layer(save: Path) -> dict[str, tuple[str, int, int, str, bytes]]:
    """The entries of the top layer of a docker-archive."""
    with tarfile.open(save) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        layer = tar.extractfile(manifest[0]["Layers"][-1])
        assert layer is not None
        blob = layer.read()
    path = save.with_suffix(".layer")
    path.write_bytes(blob)
    return members(path)


def layer_entries(entries: dict[str, tuple[str, int, int, str, bytes]]
                  ) -> dict[str, tuple[object, ...]]:
    """Type, mode, size and link target of each entry (a whiteout's mode is not compared:
    docker writes 0600, pybuild 0; both mean the same)."""
    return {k: (v[0], 0 if "/.wh." in f"/{k}" else v[1], *v[2:4]) for k, v in entries.items()}


def test_run_keeps_a_container_that_ps_lists_and_rm_removes(
        root: Path, base: Base, capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", "--name", "verbs-kept", base.name, "sh", "-c",
                   "echo kept > /f; exit 3") == 3
    assert pybuild(root, "run", base.name, "true") == 0
    assert pybuild(root, "run", "--rm", base.name, "true") == 0
    table = out(root, capfd, "ps", "-a").splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                "PORTS", "NAMES"]
    assert len(table) == 3
    generated, kept = table[1], table[2]
    assert kept.endswith("verbs-kept") and '"sh -c \'echo kept > …"' in kept
    assert "Exited (3) " in kept and base.name in kept
    assert '"true"' in generated and "Exited (0) " in generated
    assert out(root, capfd, "ps").splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES"]
    with BuildStore.open(root) as store:
        containers = ContainerStore(store).list()
        kinds = {s.name: s.kind for s in store.snapshots.walk()}
    ids = out(root, capfd, "ps", "-a", "-q").split()
    assert ids == [c.short_id for c in containers]
    assert out(root, capfd, "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"
               ).splitlines() == [f"{c.id} {c.name}" for c in containers]
    assert out(root, capfd, "ps", "-f", "exited=3", "--format", "{{.Names}}") == "verbs-kept\n"
    assert out(root, capfd, "ps", "-f", "status=exited", "-f", "name=kept", "-q") == ids[1] + "\n"
    assert out(root, capfd, "ps", "-a", "-f", f"id={ids[0]}", "-f", "status=exited", "-q"
               ) == ids[0] + "\n"
    assert pybuild(root, "ps", "-f", "state=up") == 1
    assert capfd.readouterr().err.startswith("error: --filter 'state=up': expected KEY=VALUE")
    assert {f"container-{c.id}" for c in containers} == {
        n for n, k in kinds.items() if k is Kind.ACTIVE}
    assert mounts_under(root) == []

    assert pybuild(root, "prune", "-a", "-f") == 0
    assert out(root, capfd, "cp", "verbs-kept:/f", "-").count("kept\n") == 1
    assert out(root, capfd, "rm", "verbs-kept", ids[0]) == f"verbs-kept\n{ids[0]}\n"
    with BuildStore.open(root) as store:
        assert ContainerStore(store).list() == []
        assert all(s.kind is Kind.COMMITTED for s in store.snapshots.walk())
    assert pybuild(root, "run", "--name", "verbs-kept", base.name, "true") == 0


def test_rm_of_a_running_container_needs_force(root: Path, base: Base,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    run = subprocess.Popen([*pybuild_command(), "--root", str(root), "run", "--name",
                            "verbs-live", base.name, "sh", "-c", "echo live > /live; sleep 60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        while "verbs-live" not in out(root, capfd, "ps"):
            if time.monotonic() > deadline or run.poll() is not None:
                pytest.fail(f"the container did not start: {run.communicate()}")
            time.sleep(0.2)
        assert " Up " in out(root, capfd, "ps").splitlines()[1]
        while pybuild(root, "cp", "verbs-live:/live", "-") != 0 or (
                capfd.readouterr().out.count("live\n") != 1):
            if time.monotonic() > deadline:
                pytest.fail("the running container never wrote /live")
            time.sleep(0.2)
        assert pybuild(root, "rm", "verbs-live") == 1
        assert capfd.readouterr().err == (
            'error: cannot remove container "/verbs-live": container is running: stop the '
            "container before removing or force remove\n")
        assert out(root, capfd, "rm", "-f", "verbs-live") == "verbs-live\n"
        assert run.wait(timeout=WAIT) == 137
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            try:
                run.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
    assert out(root, capfd, "ps", "-a", "-q") == ""
    assert mounts_under(root) == []
    assert list((root / "tmp").iterdir()) == []


def test_commit_export_import_and_cp_match_docker(
        root: Path, base: Base, tmp_path: Path, names: list[str], registry: RegistryProcess,
        capfd: pytest.CaptureFixture[str]) -> None:
    tag = uuid.uuid4().hex[:8]
    container = f"verbs-{tag}"
    names.append(container)
    run = ("--name", container, "-e", "FOO=bar", "-w", "/tmp")
    docker("run", "--network", "none", *run, base.name, "sh", "-c", SCRIPT)
    assert pybuild(root, "run", *run, base.name, "sh", "-c", SCRIPT) == 0

    # cp in and out (a file into a directory, a directory, the contents of a directory)
    host = tmp_path / "host"
    (host / "tree/sub").mkdir(parents=True)
    (host / "tree/sub/file").write_text("from the host\n")
    (host / "note").write_text("note\n")
    for src, dest in ((host / "note", "/d/e"), (host / "tree", "/copied"),
                      (host / "tree", "/d")):
        docker("cp", str(src), f"{container}:{dest}")
        assert pybuild(root, "cp", str(src), f"{container}:{dest}") == 0
    for src, dest in (("/d", "d"), ("/d/.", "contents"), ("/made", "made")):
        (tmp_path / "theirs").mkdir(exist_ok=True)
        (tmp_path / "ours").mkdir(exist_ok=True)
        docker("cp", f"{container}:{src}", str(tmp_path / "theirs" / dest))
        assert pybuild(root, "cp", f"{container}:{src}", str(tmp_path / "ours" / dest)) == 0
    theirs = sorted(str(p.relative_to(tmp_path / "theirs")) for p in
                    (tmp_path / "theirs").rglob("*"))
    assert theirs == sorted(str(p.relative_to(tmp_path / "ours")) for p in
                            (tmp_path / "ours").rglob("*"))
    assert (tmp_path / "ours/contents/e/note").read_text() == "note\n"
    assert (tmp_path / "ours/d/link").readlink() == Path("/made")

    # commit with a change: the same layer and config
    committed = f"pybuild-test/verbs-committed:{tag}"
    names.append(committed)
    change = ("-c", 'CMD ["cat", "/made"]', "-m", "made by a test")
    docker("commit", *change, container, committed)
    assert out(root, capfd, "commit", *change, container, committed).startswith("sha256:")
    assert our_config(root, committed, capfd) == docker_config(committed)
    history = json.loads(out(root, capfd, "history", "--no-trunc", "--format", "json",
                              committed).splitlines()[0])
    assert history["CreatedBy"] == "sh -c " + SCRIPT
    assert history["Comment"] == "made by a test"
    docker_save, our_save = tmp_path / "docker-save.tar", tmp_path / "our-save.tar"
    docker("save", "-o", str(docker_save), committed)
    assert pybuild(root, "save", "-o", str(our_save), committed) == 0
    assert layer_entries(last_layer(our_save)) == layer_entries(last_layer(docker_save))
    assert out(root, capfd, "run", "--rm", committed) == "hello\n"
    assert pybuild(root, "run", "--rm", committed, "ls", "/bin/vi") == 1

    # export: the same files, less what docker's init layer adds
    docker_export, our_export = tmp_path / "docker-export.tar", tmp_path / "our-export.tar"
    docker("export", "-o", str(docker_export), container)
    assert pybuild(root, "export", "-o", str(our_export), container) == 0
    expected = {k: v for k, v in members(docker_export).items() if k not in DOCKER_INIT}
    got = {k: v for k, v in members(our_export).items() if k not in DOCKER_INIT}
    assert set(got) == set(expected)
    assert {k: v for k, v in got.items() if v[0] != "5"} == {
        k: v for k, v in expected.items() if v[0] != "5"}

    # import with every kind of change: the same config
    imported = f"pybuild-test/verbs-imported:{tag}"
    names.append(imported)
    changes = [arg for c in CHANGES for arg in ("-c", c)]
    docker("import", *changes, "-m", "imported by a test", str(our_export), imported)
    assert out(root, capfd, "import", *changes, "-m", "imported by a test", str(our_export),
               imported).startswith("sha256:")
    assert our_config(root, imported, capfd) == docker_config(imported)
    assert our_config(root, imported, capfd)["WorkingDir"] == "/tmp/sub"

    # both images go through a registry and run in docker
    for image, argv, expect in ((committed, (), "hello\n"),
                                (imported, ("cat /d/e/f /d/tree/sub/file",),
                                 "x\nfrom the host\n")):
        ref = f"{registry.address}/{image}"
        names.append(ref)
        assert pybuild(root, "tag", image, ref) == 0
        assert pybuild(root, "push", ref) == 0
        docker("pull", ref)
        ran = docker("run", "--rm", "--network", "none", "--user", "0", ref, *argv)
        assert ran.stdout.decode() == expect


def test_a_detached_container_runs_in_the_background(root: Path, base: Base,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    container_id = out(root, capfd, "run", "-d", "--name", "verbs-detached", base.name, "sh",
                       "-c", "echo out; echo err >&2; touch /ready; sleep 60").strip()
    assert len(container_id) == 64
    assert out(root, capfd, "ps", "-q") == container_id[:12] + "\n"
    assert " Up " in out(root, capfd, "ps").splitlines()[1]
    deadline = time.monotonic() + WAIT
    while pybuild(root, "cp", "verbs-detached:/ready", "-") != 0:
        if time.monotonic() > deadline:
            pytest.fail("the detached container did not run its command")
        time.sleep(0.1)
    assert sorted(out(root, capfd, "logs", "verbs-detached").splitlines()) == ["err", "out"]
    assert pybuild(root, "rm", container_id[:6]) == 1
    assert "container is running" in capfd.readouterr().err
    assert out(root, capfd, "rm", "-f", container_id[:6]) == container_id[:6] + "\n"
    assert out(root, capfd, "ps", "-a", "-q") == ""

    assert pybuild(root, "run", "-d", "-u", "nobody-here", base.name, "true") == 125
    assert capfd.readouterr().err == (
        "error: unable to find user nobody-here: no matching entries in passwd file\n")
    assert "   Created   " in out(root, capfd, "ps", "-a")
    assert out(root, capfd, "rm", out(root, capfd, "ps", "-a", "-q").strip()) != ""
    assert len(out(root, capfd, "run", "-d", "--rm", base.name, "true").strip()) == 64
    while out(root, capfd, "ps", "-a", "-q"):
        if time.monotonic() > deadline:
            pytest.fail("run -d --rm left its container")
        time.sleep(0.1)
    assert mounts_under(root) == []
    with BuildStore.open(root) as store:
        assert {s.name: s.kind for s in store.snapshots.walk() if s.kind is not Kind.COMMITTED
                } == {}


def test_a_container_outlives_its_image_and_a_prune(root: Path, base: Base,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", "--name", "verbs-orphan", base.name, "sh", "-c",
                   "echo still here > /kept; hostname > /name") == 0
    assert pybuild(root, "rmi", base.name) == 0
    assert pybuild(root, "prune", "-a", "-f") == 0
    assert out(root, capfd, "commit", "-c", "CMD cat /kept", "verbs-orphan", "orphan:1"
               ).startswith("sha256:")
    assert out(root, capfd, "run", "--rm", "orphan:1") == "still here\n"
    short_id = out(root, capfd, "ps", "-a", "-q").strip()
    assert out(root, capfd, "run", "--rm", "orphan:1", "cat", "/name") == short_id + "\n"


def test_the_verbs_work_rootless(base: Base) -> None:
    for tool in ("useradd", "usermod", "userdel", "setpriv", "newuidmap", "newgidmap"):
        require(tool)
    try:
        user = RootlessUser.create("verbs")
    except UserSetupFailed as exc:
        pytest.fail(f"cannot set up a rootless user: {exc}")
    try:
        user.pybuild("load", "-i", str(user.share(base.archive)))
        user.pybuild("run", "--name", "c1", base.name, "sh", "-c", "echo hi > /made")
        assert "   Exited (0) " in user.pybuild("ps", "-a").stdout.decode()
        user.pybuild("commit", "-c", "CMD cat /made", "c1", "committed:1")
        assert user.pybuild("run", "--rm", "committed:1").stdout == b"hi\n"
        export = user.workdir("export") / "fs.tar"
        user.pybuild("export", "-o", str(export), "c1")
        assert members(export)["made"][4] == b"hi\n"
        user.pybuild("run", "-d", "--name", "c2", base.name, "sleep", "60")
        running = user.pybuild("cp", "c2:/etc/passwd", "-", check=False)
        assert running.returncode == 1 and b"cannot enter (a rootless run)" in running.stderr
        assert user.pybuild("rm", "c2", check=False).returncode == 1
        assert user.pybuild("rm", "-f", "c2", "c1").stdout == b"c2\nc1\n"
        assert user.pybuild("ps", "-a", "-q").stdout == b""
    finally:
        user.remove()


def test_bad_input_is_one_error_line(root: Path, base: Base, tmp_path: Path,
                                     capfd: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "run", "--name", "verbs-bad", base.name, "true") == 0
    (tmp_path / "garbage").write_text("not a tar\n")
    cases = [
        (("rm", "nosuch", "verbs-nosuch"),
         "error: No such container: nosuch\nerror: No such container: verbs-nosuch\n"),
        (("commit", "nosuch"), "error: No such container: nosuch\n"),
        (("export", "-o", str(tmp_path / "x.tar"), "nosuch"),
         "error: No such container: nosuch\n"),
        (("cp", "nosuch:/a", str(tmp_path)), "error: No such container: nosuch\n"),
        (("cp", "verbs-bad:/nope", str(tmp_path)),
         "error: No such container:path: verbs-bad:/nope\n"),
        (("cp", "verbs-bad:/bin", "verbs-bad:/tmp"),
         "error: copying between containers is not supported\n"),
        (("cp", str(tmp_path), str(tmp_path)),
         "error: must specify at least one container source\n"),
        (("cp", "verbs-bad:/bin", str(tmp_path / "garbage")),
         f"error: {tmp_path / 'garbage'}: cannot copy a directory onto a file\n"),
        (("cp", "verbs-bad:/bin/sh", str(tmp_path / "missing") + "/"),
         f"error: {tmp_path / 'missing'}/: no such directory\n"),
        (("commit", "-c", "FOO bar", "verbs-bad"),
         "error: --change 'FOO bar': foo is not a valid change command (use one of CMD, "
         "ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR)\n"),
        (("commit", "-c", "RUN true", "verbs-bad"),
         "error: --change 'RUN true': run is not a valid change command (use one of CMD, "
         "ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR)\n"),
        (("import", "-c", "EXPOSE http", str(tmp_path / "garbage")),
         "error: --change 'EXPOSE http': invalid containerPort: http\n"),
        (("import", str(tmp_path / "garbage")),
         "error: cannot import -: corrupt layer tar at byte 10: unexpected end of data in "
         "header\n"),
        (("import", str(tmp_path / "nofile.tar")),
         f"error: open {tmp_path / 'nofile.tar'}: No such file or directory\n"),
        (("run", "--name", "verbs-bad", base.name, "true"),
         'error: Conflict. The container name "/verbs-bad" is already in use by container '),
        (("run", "--name", "bad name", base.name, "true"),
         "error: Invalid container name (bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
         "allowed\n"),
    ]
    for args, message in cases:
        capfd.readouterr()
        assert pybuild(root, *args) == 1, args
        assert capfd.readouterr().err.startswith(message), args
    with BuildStore.open(root) as store:
        assert [c.name for c in ContainerStore(store).list()] == ["verbs-bad"]


def test_changes_apply_as_dockerfile_instructions() -> None:
    base = ImageConfig(env=("PATH=/bin",), cmd=("sh",), on_build=("RUN x",),
                       working_dir="/srv")
    config = apply_changes(base, ["ENV A=$PATH:/more", "WORKDIR app", "ENTRYPOINT top",
                                  "ONBUILD RUN y", "LABEL \"k k\"=v"])
    assert config.env == ("PATH=/bin", "A=/bin:/more")
    assert config.working_dir == "/srv/app"
    assert config.entrypoint == ("/bin/sh", "-c", "top") and config.cmd is None
    assert config.on_build == ("RUN x", "RUN y")
    assert config.labels == {"k k": "v"}
    assert apply_changes(base, []) is base
    with pytest.raises(BuildError, match="CMD requires at least one argument"):
        apply_changes(base, ["CMD"])


def test_export_streams_to_stdout(root: Path, base: Base,
                                  capfdbinary: pytest.CaptureFixture[bytes]) -> None:
    assert pybuild(root, "run", "--name", "verbs-stdout", base.name, "sh", "-c",
                   "echo out > /o") == 0
    capfdbinary.readouterr()
    assert pybuild(root, "export", "verbs-stdout") == 0
    with tarfile.open(fileobj=io.BytesIO(capfdbinary.readouterr().out)) as tar:
        o = tar.extractfile("o")
        assert o is not None and o.read() == b"out\n"
