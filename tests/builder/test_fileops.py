"""COPY semantics of builder.fileops.copy_into, on real files in temporary directories.

The expected results were checked against Docker 20.10's BuildKit (see the module docstring
of builder.fileops.copy); where pybuild deliberately differs the test says so.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from builder.errors import DockerfileError
from builder.fileops import CopySpec, copy_into
from builder.frontend.dockerignore import DockerIgnore

OLD = 1_000_000_000 * 1_000_000_000  # 2001-09-09, in ns
OLDER = 978_307_200 * 1_000_000_000  # 2001-01-01


def write(path: Path, text: str = "x", *, mode: int = 0o644, owner: tuple[int, int] = (0, 0),
          mtime_ns: int | None = None) -> Path:
    """Make a file (and its parents)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, *owner)
    os.chmod(path, mode)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def info(path: Path) -> tuple[int, int, int]:
    """(permission bits, uid, gid) of ``path`` without following a symlink."""
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


class Env:
    """A build context, a root filesystem and a scratch directory."""

    def __init__(self, base: Path) -> None:
        self.ctx = base / "ctx"
        self.rootfs = base / "rootfs"
        self.scratch = base / "scratch"
        self.stage = base / "stage"
        for d in (self.ctx, self.rootfs, self.scratch, self.stage):
            d.mkdir()
        (self.rootfs / "etc").mkdir()
        (self.rootfs / "etc/passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
        (self.rootfs / "etc/group").write_text("root:x:0:\nappgrp:x:1001:app\nother:x:2000:app\n")

    def copy(self, *sources: str, dest: str, ignore: DockerIgnore | None = None,
             stage: bool = False, **options: object) -> None:
        spec = CopySpec(sources=sources, dest=dest, from_context=not stage,
                        **options)  # type: ignore[arg-type]
        copy_into(spec, self.stage if stage else self.ctx, self.rootfs, ignore=ignore,
                  scratch=self.scratch)

    def fails(self, *sources: str, dest: str, **options: object) -> str:
        with pytest.raises(DockerfileError) as caught:
            self.copy(*sources, dest=dest, line=7, **options)
        assert caught.value.line == 7
        return str(caught.value)


def make_env(base: Path) -> Env:
    """An :class:`Env` whose context holds the files the tests below use."""
    e = Env(base)
    ctx = e.ctx
    write(ctx / "f.txt", "hello", mode=0o640, owner=(1234, 5678), mtime_ns=OLDER)
    write(ctx / "d/a.txt", "a", owner=(1234, 5678), mtime_ns=OLD)
    write(ctx / "d/sub/b.txt", "b", owner=(1234, 5678))
    os.chmod(ctx / "d/sub", 0o750)
    os.utime(ctx / "d/sub", ns=(OLD, OLD))
    os.chmod(ctx / "d", 0o700)
    os.symlink("a.txt", ctx / "d/ln")
    os.symlink("/etc/passwd", ctx / "d/abs")
    write(ctx / "multi1.txt", "1")
    write(ctx / "multi2.txt", "2")
    os.symlink("f.txt", ctx / "lnk")
    os.symlink("d", ctx / "lnkdir")
    return e


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


# -- directory sources -------------------------------------------------------------------

def test_directory_source_copies_its_contents(env: Env) -> None:
    env.copy("d", dest="/t1")
    t1 = env.rootfs / "t1"
    assert sorted(os.listdir(t1)) == ["a.txt", "abs", "ln", "sub"]
    assert (t1 / "sub/b.txt").read_text() == "b"
    assert info(t1) == (0o755, 0, 0)  # made for the destination, not the source's 0700
    assert info(t1 / "sub")[0] == 0o750
    assert os.lstat(t1 / "sub").st_mtime_ns == OLD
    assert os.lstat(t1 / "a.txt").st_mtime_ns == OLD


def test_trailing_slashes_do_not_matter_for_directory_sources(env: Env) -> None:
    env.copy("d/", dest="/t2/")
    assert (env.rootfs / "t2/a.txt").is_file()
    assert not (env.rootfs / "t2/d").exists()


def test_existing_destination_keeps_its_metadata_nested_directories_take_the_sources(
        env: Env) -> None:
    t3 = env.rootfs / "t3"
    (t3 / "sub").mkdir(parents=True)
    write(t3 / "sub/keep", "k")
    for d in (t3, t3 / "sub"):
        os.chmod(d, 0o700)
        os.chown(d, 7, 7)
    env.copy("d", dest="/t3")
    assert info(t3) == (0o700, 7, 7)
    assert info(t3 / "sub") == (0o750, 0, 0)
    assert os.lstat(t3 / "sub").st_mtime_ns == OLD
    assert (t3 / "sub/keep").read_text() == "k"  # merged, not replaced


# -- file sources and the destination --------------------------------------------------

def test_file_to_new_path_to_slash_and_to_existing_directory(env: Env) -> None:
    env.copy("f.txt", dest="/t4")
    env.copy("f.txt", dest="/t4dir/")
    (env.rootfs / "tmp").mkdir()
    env.copy("f.txt", dest="/tmp")
    assert (env.rootfs / "t4").read_text() == "hello"
    assert (env.rootfs / "t4dir/f.txt").read_text() == "hello"
    assert (env.rootfs / "tmp/f.txt").read_text() == "hello"
    assert info(env.rootfs / "t4") == (0o640, 0, 0)
    assert os.stat(env.rootfs / "t4").st_mtime_ns == OLDER
    assert info(env.rootfs / "t4dir") == (0o755, 0, 0)


def test_relative_destination_is_relative_to_workdir(env: Env) -> None:
    env.copy("f.txt", dest=".", workdir="/w")
    env.copy("f.txt", dest="rel/", workdir="/w")
    env.copy("f.txt", dest="t28", workdir="/w")
    env.copy("f.txt", dest="sub/.", workdir="/w")
    for path in ("w/f.txt", "w/rel/f.txt", "w/t28", "w/sub/f.txt"):
        assert (env.rootfs / path).read_text() == "hello", path


def test_existing_file_is_replaced(env: Env) -> None:
    write(env.rootfs / "t4", "old", mode=0o600)
    env.copy("f.txt", dest="/t4")
    assert (env.rootfs / "t4").read_text() == "hello"
    assert info(env.rootfs / "t4")[0] == 0o640


def test_missing_parents_are_made_0755(env: Env) -> None:
    env.copy("f.txt", dest="/a/b/c/")
    for d in ("a", "a/b", "a/b/c"):
        assert info(env.rootfs / d) == (0o755, 0, 0)


# -- several sources and wildcards -------------------------------------------------------

def test_wildcard_into_directory(env: Env) -> None:
    env.copy("multi*.txt", dest="/t5/")
    assert sorted(os.listdir(env.rootfs / "t5")) == ["multi1.txt", "multi2.txt"]


def test_wildcard_matching_one_file_may_name_a_file(env: Env) -> None:
    env.copy("m*1.txt", dest="/t7")
    assert (env.rootfs / "t7").read_text() == "1"


def test_several_sources_need_a_directory_destination(env: Env) -> None:
    # BuildKit silently keeps the last file here; the reference documents an error.
    message = env.fails("multi*.txt", dest="/t6")
    assert message.startswith("Dockerfile:7: COPY failed: When using COPY with more than "
                              "one source file, the destination must be a directory")
    assert not (env.rootfs / "t6").exists()
    env.fails("multi1.txt", "multi2.txt", dest="/t6")


def test_several_sources_into_existing_directory_without_slash(env: Env) -> None:
    (env.rootfs / "srv").mkdir()
    env.copy("multi1.txt", "multi2.txt", dest="/srv")
    assert sorted(os.listdir(env.rootfs / "srv")) == ["multi1.txt", "multi2.txt"]


def test_wildcard_without_match_copies_nothing(env: Env) -> None:
    env.copy("nosuch*", "f.txt", dest="/t14/")
    assert os.listdir(env.rootfs / "t14") == ["f.txt"]


def test_missing_source_names_pattern_and_lists_directory(env: Env) -> None:
    message = env.fails("d/sbu/b.txt", dest="/x")
    assert "'d/sbu/b.txt' not found in the build context" in message
    assert "'d' contains: a.txt, abs, ln, sub/" in message
    message = env.fails("nosuch", dest="/x")
    assert "the root contains: d/, f.txt, lnk, lnkdir/, multi1.txt, multi2.txt" in message


def test_missing_source_listing_is_capped(env: Env) -> None:
    for i in range(15):
        write(env.ctx / "many" / f"f{i:02d}")
    message = env.fails("many/nosuch", dest="/x")
    assert "f09 and 5 more" in message
    assert "f10" not in message


def test_sources_cannot_leave_the_context(env: Env) -> None:
    env.copy("../f.txt", dest="/t21")
    env.copy("/f.txt", dest="/t22")
    assert (env.rootfs / "t21").read_text() == "hello"
    assert (env.rootfs / "t22").read_text() == "hello"


def test_no_context(env: Env) -> None:
    spec = CopySpec(sources=("f.txt",), dest="/x", line=3)
    with pytest.raises(DockerfileError, match="no build context"):
        copy_into(spec, None, env.rootfs, scratch=env.scratch)


# -- owners ------------------------------------------------------------------------------

def test_context_files_belong_to_root(env: Env) -> None:
    env.copy("d", dest="/t")
    assert info(env.rootfs / "t/a.txt")[1:] == (0, 0)
    assert info(env.rootfs / "t/sub")[1:] == (0, 0)
    assert info(env.rootfs / "t/ln")[1:] == (0, 0)


def test_stage_files_keep_their_owner(env: Env) -> None:
    write(env.stage / "o/f", "s", owner=(33, 44))
    os.chown(env.stage / "o", 33, 44)
    os.chmod(env.stage / "o", 0o711)
    env.copy("/o", dest="/t18/", stage=True)
    env.copy("/o/f", dest="/t18f", stage=True)
    assert info(env.rootfs / "t18") == (0o755, 0, 0)
    assert info(env.rootfs / "t18/f")[1:] == (33, 44)
    assert info(env.rootfs / "t18f")[1:] == (33, 44)


def test_chown_by_name_uses_primary_group_and_owns_created_parents(env: Env) -> None:
    env.copy("f.txt", dest="/t8/x/y/", chown="app")
    for path in ("t8", "t8/x", "t8/x/y", "t8/x/y/f.txt"):
        assert info(env.rootfs / path)[1:] == (1000, 1001), path


def test_chown_numeric_user_gets_same_gid(env: Env) -> None:
    env.copy("f.txt", dest="/t9", chown="1000")
    assert info(env.rootfs / "t9")[1:] == (1000, 1000)


def test_chown_user_and_group(env: Env) -> None:
    env.copy("f.txt", dest="/t10", chown="app:other")
    env.copy("f.txt", dest="/t11", chown="5:6")
    assert info(env.rootfs / "t10")[1:] == (1000, 2000)
    assert info(env.rootfs / "t11")[1:] == (5, 6)


def test_chown_applies_to_whole_tree_and_stage_sources(env: Env) -> None:
    write(env.stage / "o/f", "s", owner=(33, 44))
    env.copy("d", dest="/t19/", chown="app")
    env.copy("/o", dest="/t20/", chown="7:8", stage=True)
    for path in ("t19", "t19/a.txt", "t19/sub", "t19/sub/b.txt", "t19/ln"):
        assert info(env.rootfs / path)[1:] == (1000, 1001), path
    assert info(env.rootfs / "t20/f")[1:] == (7, 8)


def test_chown_unknown_names_fail(env: Env) -> None:
    # BuildKit silently uses 0 here; the Dockerfile reference says the build fails.
    assert "unable to find user nosuch: no matching entries in passwd file" in env.fails(
        "f.txt", dest="/x", chown="nosuch")
    assert "unable to find group nogrp: no matching entries in group file" in env.fails(
        "f.txt", dest="/x", chown="app:nogrp")
    assert not (env.rootfs / "x").exists()


# -- modes -------------------------------------------------------------------------------

def test_chmod_octal_applies_to_files_and_copied_directories(env: Env) -> None:
    env.copy("d", dest="/t12/", chmod="600")
    t12 = env.rootfs / "t12"
    assert info(t12)[0] == 0o755  # the destination was made, not copied
    assert info(t12 / "a.txt")[0] == 0o600
    assert info(t12 / "sub")[0] == 0o600
    assert info(t12 / "sub/b.txt")[0] == 0o600
    assert os.path.islink(t12 / "ln")


def test_chmod_octal_sets_special_bits_exactly(env: Env) -> None:
    write(env.ctx / "suid", mode=0o4755)
    env.copy("f.txt", dest="/t12f", chmod="4755")
    env.copy("suid", dest="/t12s", chmod="0755")
    assert info(env.rootfs / "t12f")[0] == 0o4755
    assert info(env.rootfs / "t12s")[0] == 0o755


def test_chmod_symbolic(env: Env) -> None:
    write(env.ctx / "s/run.sh", mode=0o744)
    write(env.ctx / "s/data", mode=0o664)
    os.chmod(env.ctx / "s", 0o700)
    (env.ctx / "s/dir").mkdir(mode=0o700)
    env.copy("s", dest="/sym/", chmod="u=rwX,go=rX")
    sym = env.rootfs / "sym"
    assert info(sym / "run.sh")[0] == 0o755
    assert info(sym / "data")[0] == 0o644
    assert info(sym / "dir")[0] == 0o755
    env.copy("s/data", dest="/plusx", chmod="+x")
    env.copy("s/data", dest="/gow", chmod="go-w")
    assert info(env.rootfs / "plusx")[0] == 0o775
    assert info(env.rootfs / "gow")[0] == 0o644


def test_invalid_chmod(env: Env) -> None:
    message = env.fails("f.txt", dest="/x", chmod="u+y")
    assert "invalid chmod parameter: 'u+y'" in message
    env.fails("f.txt", dest="/x", chmod="999")


def test_mode_bits_times_and_xattrs_are_kept(env: Env) -> None:
    write(env.ctx / "m/suid", mode=0o4755, mtime_ns=OLD)
    write(env.ctx / "m/sgid", mode=0o2711)
    (env.ctx / "m/sticky").mkdir()
    os.chmod(env.ctx / "m/sticky", 0o1777)
    try:
        os.setxattr(env.ctx / "m/suid", "user.pybuild", b"kept")
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        has_xattrs = False
    else:
        has_xattrs = True
    env.copy("m", dest="/m/")
    assert info(env.rootfs / "m/suid")[0] == 0o4755
    assert info(env.rootfs / "m/sgid")[0] == 0o2711
    assert info(env.rootfs / "m/sticky")[0] == 0o1777
    assert os.stat(env.rootfs / "m/suid").st_mtime_ns == OLD
    if has_xattrs:
        assert os.getxattr(env.rootfs / "m/suid", "user.pybuild") == b"kept"


# -- symlinks, hardlinks, special files --------------------------------------------------

def test_symlinks_inside_a_directory_are_copied_as_links(env: Env) -> None:
    env.copy("d", dest="/t")
    assert os.readlink(env.rootfs / "t/ln") == "a.txt"
    assert os.readlink(env.rootfs / "t/abs") == "/etc/passwd"


def test_named_symlink_sources_are_followed(env: Env) -> None:
    env.copy("lnk", dest="/t13")
    env.copy("lnkdir", dest="/t13d/")
    env.copy("d/ln", dest="/t16")
    assert not os.path.islink(env.rootfs / "t13")
    assert (env.rootfs / "t13").read_text() == "hello"
    assert (env.rootfs / "t13d/sub/b.txt").read_text() == "b"
    assert (env.rootfs / "t16").read_text() == "a"


def test_wildcard_matched_symlinks_are_followed(env: Env) -> None:
    env.copy("ln*", dest="/w/")
    assert (env.rootfs / "w/lnk").read_text() == "hello"
    assert (env.rootfs / "w/a.txt").read_text() == "a"  # a directory's contents


def test_symlink_sources_cannot_leave_the_context(env: Env) -> None:
    assert "'d/abs' not found in the build context" in env.fails("d/abs", dest="/t20")


def test_a_symlink_loop_source_is_named_as_one(env: Env) -> None:
    os.symlink("loop", env.ctx / "loop")
    os.symlink("ping", env.ctx / "pong")
    os.symlink("pong", env.ctx / "ping")
    assert "'loop' in the build context: symlink loop" in env.fails("loop", dest="/x")
    assert "'ping' in the build context: symlink loop" in env.fails("ping", dest="/x")
    assert "'loop/x' in the build context: symlink loop" in env.fails("loop/x", dest="/x")
    assert "'lo*' in the build context: symlink loop" in env.fails("lo*", dest="/x/")
    env.copy("lnk", dest="/still-fine")
    assert (env.rootfs / "still-fine").read_text() == "hello"


def test_hardlinks_stay_hardlinks(env: Env) -> None:
    write(env.ctx / "h/one", "same")
    os.link(env.ctx / "h/one", env.ctx / "h/two")
    env.copy("h", dest="/h/")
    one, two = os.stat(env.rootfs / "h/one"), os.stat(env.rootfs / "h/two")
    assert one.st_ino == two.st_ino
    assert one.st_ino != os.stat(env.ctx / "h/one").st_ino


def test_fifos_and_devices_are_recreated(env: Env) -> None:
    (env.ctx / "dev").mkdir()
    os.mkfifo(env.ctx / "dev/fifo", 0o640)
    os.mknod(env.ctx / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    env.copy("dev", dest="/dev/")
    assert stat.S_ISFIFO(os.lstat(env.rootfs / "dev/fifo").st_mode)
    null = os.lstat(env.rootfs / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)


def remove_deep(top: Path) -> None:
    """Remove a tree too deep for the recursive ``shutil.rmtree``."""
    order = []
    stack = [os.fspath(top)]
    while stack:
        directory = stack.pop()
        order.append(directory)
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    os.unlink(entry.path)
    for directory in reversed(order):
        os.rmdir(directory)


def test_deep_trees_do_not_recurse(env: Env) -> None:
    path = "/".join(["n"] * 1200)
    current = env.ctx / "deep"
    current.mkdir()
    try:
        for _ in range(1200):
            current = current / "n"
            current.mkdir()
        write(current / "leaf", "leaf")
        env.copy("deep", dest="/deep/")
        assert (env.rootfs / "deep" / path / "leaf").read_text() == "leaf"
    finally:
        remove_deep(env.ctx / "deep")
        if (env.rootfs / "deep").exists():
            remove_deep(env.rootfs / "deep")


# -- the destination stays inside the root filesystem ------------------------------------

def test_destination_symlinks_are_followed_inside_the_root(env: Env) -> None:
    (env.rootfs / "real").mkdir()
    os.symlink("/real", env.rootfs / "lnk")
    env.copy("f.txt", dest="/lnk/")
    assert (env.rootfs / "real/f.txt").read_text() == "hello"


def test_relative_symlink_escape_stays_in_root(env: Env, tmp_path: Path) -> None:
    os.symlink("../../../../..", env.rootfs / "evil")
    env.copy("f.txt", dest="/evil/tevil")
    env.copy("d", dest="/evil/dir")
    assert (env.rootfs / "tevil").read_text() == "hello"
    assert (env.rootfs / "dir/a.txt").is_file()
    assert not (tmp_path / "tevil").exists()


def test_absolute_symlink_escape_stays_in_root(env: Env, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(os.fspath(outside), env.rootfs / "out")
    os.symlink("../outside", env.rootfs / "rel")
    env.copy("f.txt", dest="/out/x")
    env.copy("f.txt", dest="/rel/y")
    assert os.listdir(outside) == []
    assert (env.rootfs / os.fspath(outside).lstrip("/") / "x").read_text() == "hello"
    assert (env.rootfs / "outside/y").read_text() == "hello"


def test_destination_symlink_to_file_is_written_through(env: Env) -> None:
    write(env.rootfs / "tfile", "orig")
    os.symlink("/tfile", env.rootfs / "tfl")
    os.symlink("/nowhere/x", env.rootfs / "dang")
    env.copy("f.txt", dest="/tfl")
    env.copy("f.txt", dest="/dang")
    assert os.path.islink(env.rootfs / "tfl")
    assert (env.rootfs / "tfile").read_text() == "hello"
    assert (env.rootfs / "nowhere/x").read_text() == "hello"


def test_symlinks_inside_destination_tree_are_not_followed(env: Env, tmp_path: Path) -> None:
    (env.rootfs / "t26").mkdir()
    os.symlink(os.fspath(tmp_path / "outside"), env.rootfs / "t26/sub")
    message = env.fails("d", dest="/t26")
    assert "cannot copy a directory to the non-directory /t26/sub" in message
    (env.rootfs / "t27").mkdir()
    os.symlink(os.fspath(tmp_path / "victim"), env.rootfs / "t27/ln")
    env.copy("d", dest="/t27")
    assert os.readlink(env.rootfs / "t27/ln") == "a.txt"
    assert not (tmp_path / "victim").exists()


# -- conflicts ---------------------------------------------------------------------------

def test_file_cannot_replace_directory(env: Env) -> None:
    (env.rootfs / "tmp/f.txt").mkdir(parents=True)
    message = env.fails("f.txt", dest="/tmp/")
    assert "cannot replace the directory /tmp/f.txt with a file" in message


def test_directory_cannot_merge_into_file(env: Env) -> None:
    assert "non-directory /etc/passwd" in env.fails("d", dest="/etc/passwd")
    write(env.rootfs / "t24/sub", "x")
    assert "non-directory /t24/sub" in env.fails("d", dest="/t24")
    (env.rootfs / "t25/a.txt").mkdir(parents=True)
    assert "cannot replace the directory /t25/a.txt" in env.fails("d", dest="/t25")


def test_destination_parent_is_a_file(env: Env) -> None:
    message = env.fails("f.txt", dest="/etc/passwd/")
    assert "cannot make directory /etc/passwd" in message


def test_error_names_file_and_line(env: Env) -> None:
    spec = CopySpec(sources=("nosuch",), dest="/x", line=12, file="build/Dockerfile.prod")
    with pytest.raises(DockerfileError) as caught:
        copy_into(spec, env.ctx, env.rootfs, scratch=env.scratch)
    assert str(caught.value).startswith("build/Dockerfile.prod:12: COPY failed: 'nosuch' ")
