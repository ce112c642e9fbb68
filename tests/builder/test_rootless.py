"""Rootless builds (:mod:`builder.rootless`): ``pybuild`` run by an ordinary user that the
tests create (``useradd`` with a range in /etc/subuid and /etc/subgid).

Each build is compared with the same build by root: with ``SOURCE_DATE_EPOCH`` set the
image IDs and manifest digests must be the same, so every layer is byte for byte the same.
buildah, run by the same user with its rootless overlay storage, builds the same
Dockerfiles side by side and its file trees must match ours.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder import rootless
from layerstore.testing.tree import Entry, differences, tar_manifest
from registry.testing.processes import distribution
from tests.builder.bases import BaseImages
from tests.builder.examples import (
    CommandFailed,
    all_examples,
    build_options,
    pybuild_command,
    run,
)
from tests.builder.rootlessuser import RootlessUser, UserSetupFailed
from tests.peers import require

EPOCH = "1700000000"
TIMEOUT = 600

CHOWN_DOCKERFILE = """\
FROM busybox
RUN mkdir -p /data/a /data/b /data/c /data/far \\
 && echo one > /data/a/f && echo two > /data/b/f && echo three > /data/c/f \\
 && chown -R 1000:1000 /data/a && chown -R 2000:3000 /data/b \\
 && chown 65534:65534 /data/c /data/c/f && chown 123456:654321 /data/far \\
 && chmod 4755 /data/a/f && chmod 2750 /data/b \\
 && ln -s ../a/f /data/c/link && ln /data/b/f /data/b/hard \\
 && rm -rf /home && rm /bin/vi
COPY --chown=4242:4343 hello.txt /data/hello.txt
COPY hello.txt /root-owned.txt
RUN rm -rf /data/b && mkdir /data/b && echo new > /data/b/g && chown 1234:5678 /data/b/g
USER 1000
RUN id -u > /tmp/who && ls -ln /data
"""

# security.capability (cap_net_bind_service+ep, v2) and a user xattr set by a RUN step
XATTR_DOCKERFILE = """\
FROM debian:bookworm
RUN cp /bin/true /usr/local/bin/bind-true && chown 1000:1000 /usr/local/bin/bind-true \\
 && python3 -c "import os; os.setxattr('/usr/local/bin/bind-true', 'security.capability', \\
    bytes.fromhex('0100000200040000000000000000000000000000')); \\
    os.setxattr('/usr/local/bin/bind-true', 'user.note', b'kept')"
"""

SCRATCH_DOCKERFILE = """\
FROM scratch
COPY hello.txt /hello.txt
COPY --chown=7:8 hello.txt /etc/owned.txt
"""


@pytest.fixture(scope="module")
def user() -> Iterator[RootlessUser]:
    """A new ordinary user with 1,000,000 subordinate ids, removed afterwards."""
    for tool in ("useradd", "usermod", "userdel", "setpriv", "newuidmap", "newgidmap"):
        require(tool)
    try:
        made = RootlessUser.create()
    except UserSetupFailed as exc:
        pytest.fail(f"cannot set up a rootless user: {exc}")
    yield made
    made.remove()


@pytest.fixture(scope="module")
def bases(user: RootlessUser, base_images: BaseImages) -> BaseImages:
    """The base images, loaded into the user's default store (as the user)."""
    for base in base_images.images:
        archive = user.share(base.archive)
        user.pybuild("load", "-i", str(archive))
    return base_images


@pytest.fixture(scope="module")
def root_store(tmp_path_factory: pytest.TempPathFactory, base_images: BaseImages) -> Path:
    """A store of root's with the base images, to build the same Dockerfiles in."""
    root = tmp_path_factory.mktemp("rootless-root-store")
    for base in base_images.images:
        run([*pybuild_command(), "--root", str(root), "load", "-i", str(base.archive)],
            timeout=TIMEOUT)
    return root


def _context(user: RootlessUser, name: str, dockerfile: str) -> Path:
    """A build context readable by everyone."""
    ctx = user.base / "contexts" / name
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "hello.txt").write_text("hello\n")
    for p in (ctx.parent, ctx, *ctx.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return ctx


def _inspect_root(root: Path, name: str) -> tuple[str, str]:
    doc = json.loads(run([*pybuild_command(), "--root", str(root), "inspect", name],
                         timeout=TIMEOUT).stdout)[0]
    return doc["Id"], doc["Manifest"]


def _inspect_user(user: RootlessUser, name: str) -> tuple[str, str]:
    doc = json.loads(user.pybuild("inspect", name).stdout)[0]
    return doc["Id"], doc["Manifest"]


def _build_both(user: RootlessUser, root_store: Path, ctx: Path, tag: str,
                *extra: str) -> tuple[tuple[str, str], tuple[str, str]]:
    """Build ``ctx`` as root and as the user; (image ID, manifest digest) of each."""
    run([*pybuild_command(), "--root", str(root_store), "build", "-q", "-t", tag, *extra,
         str(ctx)], timeout=TIMEOUT, env={"SOURCE_DATE_EPOCH": EPOCH, "PYBUILD_NO_DAEMON": "1"})
    user.pybuild("build", "-q", "-t", tag, *extra, str(ctx), env={"SOURCE_DATE_EPOCH": EPOCH})
    return _inspect_root(root_store, tag), _inspect_user(user, tag)


def test_rootless_build_is_byte_identical_to_roots(user: RootlessUser, bases: BaseImages,
                                                   root_store: Path) -> None:
    ctx = _context(user, "chown", CHOWN_DOCKERFILE)
    as_root, as_user = _build_both(user, root_store, ctx, "rootless/chown:1")
    assert as_user == as_root
    # the store is the user's default one; on the host its files belong to the user's
    # subordinate ids (uid 1000 inside is the 1000th id of the range)
    start = int(next(line.split(":")[1] for line in Path("/etc/subuid").read_text().split()
                     if line.startswith(f"{user.name}:")))
    owners = {p.stat().st_uid for p in (user.store / "snapshots").rglob("data/a/f")}
    assert owners == {start + 999}


def test_scratch_copy_rootless(user: RootlessUser, bases: BaseImages,
                               root_store: Path) -> None:
    ctx = _context(user, "scratch", SCRATCH_DOCKERFILE)
    as_root, as_user = _build_both(user, root_store, ctx, "rootless/scratch:1")
    assert as_user == as_root


def test_rootless_xattrs_are_byte_identical_to_roots(user: RootlessUser, bases: BaseImages,
                                                     root_store: Path) -> None:
    ctx = _context(user, "xattr", XATTR_DOCKERFILE)
    as_root, as_user = _build_both(user, root_store, ctx, "rootless/xattr:1")
    assert as_user == as_root
    proc = user.pybuild("run", "--rm", "rootless/xattr:1", "python3", "-c",
                        "import os; p = '/usr/local/bin/bind-true'; "
                        "print(os.getxattr(p, 'security.capability').hex(), "
                        "os.getxattr(p, 'user.note'))")
    assert proc.stdout.decode().split() == ["0100000200040000000000000000000000000000",
                                            "b'kept'"]


def test_device_nodes_of_a_base_layer_are_skipped_rootless(user: RootlessUser,
                                                          bases: BaseImages,
                                                          tmp_path: Path) -> None:
    """A user namespace may not make device nodes: a base layer's are left out when it is
    unpacked (as containers/storage does rootless); the build goes on."""
    from layerstore.assembly import assemble_image, history_entry, host_architecture
    from layerstore.content.local import LocalStore
    from layerstore.diff import write_tree
    from layerstore.docker_archive import ArchiveImage, write_docker_archive
    from layerstore.oci import Image, ImageConfig
    from layerstore.testing.rootfs import make_busybox_rootfs

    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "dev").mkdir(exist_ok=True)
    os.mknod(rootfs / "dev" / "console", 0o620 | 0o020000, os.makedev(5, 1))
    store = LocalStore(tmp_path / "content")
    layer = write_tree(rootfs, store, "gzip", source_date_epoch=0)
    image = Image(architecture=host_architecture(), os="linux", created="1970-01-01T00:00:00Z",
                  config=ImageConfig(cmd=("sh",)), history=(history_entry("rootfs"),))
    stored = assemble_image(store, image, [layer])
    archive = user.base / "with-devices.tar"
    write_docker_archive(archive, store, [ArchiveImage(stored, ("rootless/devices:base",))])
    archive.chmod(0o644)
    user.pybuild("load", "-i", str(archive))
    ctx = _context(user, "devices", "FROM rootless/devices:base\nRUN echo ok > /ok\n")
    user.pybuild("build", "-q", "-t", "rootless/devices:1", str(ctx))
    proc = user.pybuild("run", "--rm", "rootless/devices:1", "cat", "/ok")
    assert proc.stdout == b"ok\n"


def test_a_store_where_overlayfs_cannot_work_says_so(user: RootlessUser,
                                                     bases: BaseImages) -> None:
    """A store on overlayfs (a container's own root) cannot hold overlay upper layers: the
    one-line error says what a rootless overlay needs."""
    from layerstore import syscalls

    top = user.base / f"on-overlay-{uuid.uuid4().hex[:6]}"
    for d in ("lower", "upper", "work", "merged"):
        (top / d).mkdir(parents=True)
    syscalls.mount("overlay", top / "merged", "overlay", 0,
                   f"lowerdir={top / 'lower'},upperdir={top / 'upper'},workdir={top / 'work'}")
    try:
        user.own(top / "merged")
        env = {"PYBUILD_ROOT": str(top / "merged" / "store")}
        user.pybuild("load", "-i", str(user.base / bases.images[0].archive.name), env=env)
        ctx = _context(user, "on-overlay", "FROM busybox\nRUN true\n")
        proc = user.pybuild("build", "-q", str(ctx), env=env, check=False)
    finally:
        syscalls.umount(top / "merged")
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert "overlay mount" in lines[0] and "in a user namespace" in lines[0], lines[0]


def test_rootless_rebuild_hits_the_cache(user: RootlessUser, bases: BaseImages) -> None:
    unique = f"FROM busybox\nRUN echo {uuid.uuid4().hex} > /unique\n"
    ctx = _context(user, "cache", CHOWN_DOCKERFILE.replace("FROM busybox\n", unique))
    first = user.pybuild("build", "--progress", "plain", "-t", "rootless/cache:1", str(ctx))
    assert b"CACHED" not in first.stderr + first.stdout
    again = user.pybuild("build", "--progress", "plain", "-t", "rootless/cache:1", str(ctx))
    out = (again.stderr + again.stdout).decode()
    steps = [line for line in out.splitlines() if line.startswith("#") and " [" in line
             and ("RUN" in line or "COPY" in line)]
    assert steps, out
    assert out.count("CACHED") >= len(steps), out


def test_rootless_run(user: RootlessUser, bases: BaseImages) -> None:
    ctx = _context(user, "run", CHOWN_DOCKERFILE)
    user.pybuild("build", "-q", "-t", "rootless/run:1", str(ctx))
    proc = user.pybuild("run", "--rm", "--user", "0", "rootless/run:1", "sh", "-c",
                        "id -u; stat -c '%u:%g %n' /data/a/f /data/far /data/hello.txt; "
                        "cat /tmp/who; exit 3", check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 3, proc.stderr.decode()
    assert out.splitlines() == ["0", "1000:1000 /data/a/f", "123456:654321 /data/far",
                                "4242:4343 /data/hello.txt", "1000"]


def test_rootless_save_and_load(user: RootlessUser, bases: BaseImages) -> None:
    ctx = _context(user, "save", CHOWN_DOCKERFILE)
    user.pybuild("build", "-q", "-t", "rootless/save:1", str(ctx))
    before = _inspect_user(user, "rootless/save:1")
    archive = user.workdir("archives") / "save.tar"
    user.pybuild("save", "-o", str(archive), "rootless/save:1")
    assert archive.stat().st_uid == user.uid
    user.pybuild("rmi", "rootless/save:1")
    user.pybuild("load", "-i", str(archive))
    assert _inspect_user(user, "rootless/save:1") == before


def test_rootless_push_and_pull(user: RootlessUser, bases: BaseImages,
                                tmp_path: Path) -> None:
    registry = distribution(tmp_path / "registry").start()
    try:
        ctx = _context(user, "push", CHOWN_DOCKERFILE)
        ref = f"{registry.address}/rootless/push:1"
        user.pybuild("build", "-q", "-t", ref, "--push", str(ctx), timeout=TIMEOUT)
        pushed = _inspect_user(user, ref)
        user.pybuild("rmi", ref)
        user.pybuild("pull", ref, timeout=TIMEOUT)
        assert _inspect_user(user, ref) == pushed
        proc = user.pybuild("run", "--rm", ref, "cat", "/data/hello.txt")
        assert proc.stdout == b"hello\n"
    finally:
        registry.stop()


def test_missing_subordinate_ids_is_one_clear_line() -> None:
    require("setpriv")
    try:
        bare = RootlessUser.create("pbns", subordinate=False)
    except UserSetupFailed as exc:
        pytest.fail(f"cannot set up a user: {exc}")
    try:
        proc = bare.pybuild("images", check=False)
    finally:
        bare.remove()
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1
    assert len(lines) == 1, lines
    assert "/etc/subuid" in lines[0] and bare.name in lines[0], lines[0]
    assert "Traceback" not in proc.stderr.decode()


@pytest.mark.unit
@pytest.mark.parametrize(("relative", "name"), [
    ("user/max_user_namespaces", "user.max_user_namespaces"),
    ("kernel/unprivileged_userns_clone", "kernel.unprivileged_userns_clone"),
])
def test_disabled_user_namespaces_name_the_sysctl(tmp_path: Path, relative: str,
                                                  name: str) -> None:
    (tmp_path / relative).parent.mkdir(parents=True)
    (tmp_path / relative).write_text("0\n")
    with pytest.raises(rootless.RootlessError) as exc:
        rootless.check_user_namespaces(tmp_path)
    message = str(exc.value)
    assert "\n" not in message
    assert name in message and "disabled" in message


@pytest.mark.unit
def test_enabled_user_namespaces_pass_the_check(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "max_user_namespaces").write_text("63000\n")
    rootless.check_user_namespaces(tmp_path)
    failure = rootless._unshare_failed(PermissionError(1, "Operation not permitted"), tmp_path)
    assert "user.max_user_namespaces" in str(failure) and "\n" not in str(failure)


@pytest.mark.unit
def test_subordinate_ranges_are_read_by_name_or_uid(tmp_path: Path) -> None:
    me = rootless.Identity(1234, 1234, "alice", "/home/alice")
    subuid = tmp_path / "subuid"
    subuid.write_text("bob:100000:65536\nalice:200000:1000\n1234:300000:65536\n")
    assert rootless.subordinate_ranges(subuid, me) == (
        rootless.IdRange(200000, 1000), rootless.IdRange(300000, 65536))
    subuid.write_text("alice:200000:1000\n")
    with pytest.raises(rootless.RootlessError, match="has 1000 subordinate ids"):
        rootless.subordinate_ranges(subuid, me)
    assert rootless._map_argv("newuidmap", 42, 1234, (rootless.IdRange(200000, 65536),)) == [
        "newuidmap", "42", "0", "1234", "1", "1", "200000", "65536"]


def test_daemon_serves_only_its_user(user: RootlessUser, bases: BaseImages,
                                     root_store: Path) -> None:
    directory = user.workdir(f"daemon-{uuid.uuid4().hex[:6]}")
    env = {"PYBUILD_DAEMON_DIR": str(directory)}
    del_env = {"PYBUILD_NO_DAEMON": ""}
    user.pybuild("daemon", "start", env={**env, **del_env}, timeout=120)
    try:
        out = user.pybuild("images", env={**env, **del_env}).stdout.decode()
        assert "busybox" in out
        log = (directory / "daemon.log").read_text()
        assert "runs images" in log, log
        # root pointed at the user's daemon runs the command itself, in its own store
        proc = subprocess.run([*pybuild_command(), "--root", str(root_store), "images"],
                              capture_output=True, timeout=120,
                              env={**os.environ, **env, "PYBUILD_NO_DAEMON": ""})
        assert proc.returncode == 0, proc.stderr.decode()
        assert (directory / "daemon.log").read_text().count("runs images") == 1
    finally:
        user.pybuild("daemon", "stop", env={**env, **del_env}, timeout=120)


def test_daemon_refuses_a_socket_directory_of_another_user(user: RootlessUser,
                                                           tmp_path: Path) -> None:
    squatted = user.base / f"squatted-{uuid.uuid4().hex[:6]}"
    squatted.mkdir(mode=0o777)
    squatted.chmod(0o777)
    proc = user.pybuild("daemon", "start", "--dir", str(squatted), check=False, timeout=120)
    assert proc.returncode == 1
    assert "belongs to another user" in proc.stderr.decode(), proc.stderr.decode()


LAYERSTORE_SUITES = ("tests/layerstore/test_snapshots.py",
                     "tests/layerstore/test_snapshot_session.py",
                     "tests/layerstore/test_snapshot_layers.py")
_IN_NAMESPACE = ("import sys; from builder import rootless; rootless.enter(); import pytest; "
                 "sys.exit(pytest.main(sys.argv[1:]))")


def test_snapshotter_suites_pass_rootless(user: RootlessUser) -> None:
    """The snapshotter conformance suite and the snapshot/layer tests, run by the user in
    its user namespace: overlays with userxattr, user.overlay.opaque, whiteouts."""
    repo = Path(__file__).resolve().parents[2]
    proc = user.run([*user.python, "-c", _IN_NAMESPACE, "-p", "no:cacheprovider", "-q",
                     "--rootdir", str(repo), *(str(repo / s) for s in LAYERSTORE_SUITES)],
                    env={"PYTHONDONTWRITEBYTECODE": "1"}, timeout=TIMEOUT, check=False)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out[-4000:] + proc.stderr.decode(errors="replace")[-2000:]
    assert " passed" in out and "failed" not in out


# -- buildah, rootless, side by side ------------------------------------------------------


#: The empty mount points buildah leaves behind in an image whose RUN steps it ran: /run
#: (for /run/secrets and /run/.containerenv) and the /etc files it bind-mounts when the
#: image has none of its own.
BUILDAH_STUBS = ("run", "etc/hosts", "etc/resolv.conf", "etc/hostname")


def _buildah(user: RootlessUser) -> list[str]:
    storage = user.base / "buildah"
    return ["buildah", "--storage-driver", "overlay", "--root", str(storage / "root"),
            "--runroot", str(storage / "run")]


@pytest.fixture(scope="module")
def buildah_user(user: RootlessUser, base_images: BaseImages) -> RootlessUser:
    """The user's buildah storage (rootless overlay) holding the base images."""
    require("buildah")
    user.workdir("buildah")
    for base in base_images.images:
        archive = user.share(base.archive)
        image_id = user.run([*_buildah(user), "pull", "-q", f"docker-archive:{archive}"],
                            env=_buildah_env(user)).stdout.decode().split()[-1]
        user.run([*_buildah(user), "tag", image_id, base.name], env=_buildah_env(user))
    return user


def _buildah_env(user: RootlessUser) -> dict[str, str]:
    runtime = user.base / "xdg-runtime"
    if not runtime.exists():
        runtime.mkdir(mode=0o700)
        user.own(runtime)
    return {"XDG_RUNTIME_DIR": str(runtime)}


def _flat_tree(archive: Path, store: Path, work: Path) -> dict[str, Entry]:
    """The file tree of the image in a docker-archive, flattened by root's pybuild
    (``FROM`` it, ``--output type=tar``) and described path by path."""
    out = run([*pybuild_command(), "--root", str(store), "load", "-i", str(archive)],
              timeout=TIMEOUT, env={"PYBUILD_NO_DAEMON": "1"}).stdout.decode()
    names = [line.split(":", 1)[1].strip() for line in out.splitlines()
             if line.startswith("Loaded image:")]
    if not names:
        raise CommandFailed(f"pybuild load of {archive} named no image: {out}")
    ctx = work / archive.stem
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(f"FROM {names[0]}\n")
    run([*pybuild_command(), "--root", str(store), "build", "-q", "--output",
         f"type=tar,dest={ctx / 'rootfs.tar'}", str(ctx)], timeout=TIMEOUT,
        env={"PYBUILD_NO_DAEMON": "1"})
    with (ctx / "rootfs.tar").open("rb") as f:
        return tar_manifest(f)


@pytest.mark.parametrize("name", ["chown", "scratch"])
def test_buildah_rootless_builds_the_same_trees(name: str, buildah_user: RootlessUser,
                                                bases: BaseImages, tmp_path: Path) -> None:
    user = buildah_user
    ctx = _context(user, f"buildah-{name}",
                   CHOWN_DOCKERFILE if name == "chown" else SCRATCH_DOCKERFILE)
    tag = f"rootless-{uuid.uuid4().hex[:8]}/{name}"
    archives = user.workdir("buildah-archives")
    user.run([*_buildah(user), "bud", "--network", "host", "--layers", "-t", f"{tag}:buildah",
              str(ctx)], env=_buildah_env(user), timeout=TIMEOUT)
    user.run([*_buildah(user), "push", f"{tag}:buildah",
              f"docker-archive:{archives / f'{name}-buildah.tar'}:{tag}:buildah"],
             env=_buildah_env(user), timeout=TIMEOUT)
    user.pybuild("build", "-q", "-t", f"{tag}:ours", str(ctx))
    user.pybuild("save", "-o", str(archives / f"{name}-ours.tar"), f"{tag}:ours")
    store = tmp_path / "flatten-store"
    ours = _flat_tree(archives / f"{name}-ours.tar", store, tmp_path)
    theirs = _flat_tree(archives / f"{name}-buildah.tar", store, tmp_path)
    for stub in BUILDAH_STUBS:
        left = theirs.get(stub)
        if stub not in ours and left is not None and left.size == 0:
            del theirs[stub]
    assert differences(ours, theirs) == []


# -- the examples, rootless and as root ----------------------------------------------------


@pytest.mark.parametrize("example", all_examples(), ids=lambda e: e.name)
def test_examples_rootless_match_root(example: object, user: RootlessUser, bases: BaseImages,
                                      root_store: Path) -> None:
    from tests.builder.examples import Example

    assert isinstance(example, Example)
    builds = []
    if example.parent is not None:
        builds.append((example.parent.tag, ["-f", str(example.parent.dockerfile),
                                            str(example.parent.context)]))
    builds.append((f"rootless/{example.name}:1", [*build_options(example), "-f",
                                                   str(example.dockerfile),
                                                   str(example.context)]))
    for tag, args in builds:
        run([*pybuild_command(), "--root", str(root_store), "build", "-q", "-t", tag, *args],
            timeout=TIMEOUT, env={"SOURCE_DATE_EPOCH": EPOCH, "PYBUILD_NO_DAEMON": "1"})
        user.pybuild("build", "-q", "-t", tag, *args, env={"SOURCE_DATE_EPOCH": EPOCH})
        assert _inspect_user(user, tag) == _inspect_root(root_store, tag), tag
