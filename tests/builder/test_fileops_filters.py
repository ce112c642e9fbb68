"""COPY filters and extras: .dockerignore, --exclude, --parents and heredoc sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import DockerfileError
from builder.frontend.dockerignore import DockerIgnore
from tests.builder.test_fileops import Env, info, make_env, write


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


# -- .dockerignore and --exclude ---------------------------------------------------------

def test_dockerignore_hides_context_files(env: Env) -> None:
    ignore = DockerIgnore.parse("d/sub\n*.txt\n!multi1.txt\n")
    env.copy(".", dest="/all/", ignore=ignore)
    all_ = env.rootfs / "all"
    assert sorted(os.listdir(all_)) == ["d", "lnk", "lnkdir", "multi1.txt"]
    assert sorted(os.listdir(all_ / "d")) == ["a.txt", "abs", "ln"]
    with pytest.raises(DockerfileError, match=r"excluded by \.dockerignore"):
        env.copy("f.txt", dest="/x", ignore=ignore)
    env.copy("multi*", dest="/m/", ignore=ignore)
    assert os.listdir(env.rootfs / "m") == ["multi1.txt"]


def test_dockerignore_reincluded_file_in_excluded_directory(env: Env) -> None:
    ignore = DockerIgnore.parse("d\n!d/sub/b.txt\n")
    env.copy(".", dest="/all/", ignore=ignore)
    assert sorted(os.listdir(env.rootfs / "all/d")) == ["sub"]
    assert info(env.rootfs / "all/d")[0] == 0o700
    assert (env.rootfs / "all/d/sub/b.txt").read_text() == "b"
    env.copy("d", dest="/only/", ignore=ignore)
    assert os.listdir(env.rootfs / "only") == ["sub"]


def test_dockerignore_does_not_apply_to_stage_sources(env: Env) -> None:
    write(env.stage / "f.txt", "stage")
    env.copy("f.txt", dest="/s", stage=True, ignore=DockerIgnore.parse("*\n"))
    assert (env.rootfs / "s").read_text() == "stage"


def test_exclude_is_relative_to_each_source(env: Env) -> None:
    for name in ("dir1/file-101.png", "dir1/file-102.txt", "dir2/file-201.pdf",
                 "dir2/file-203.png", "dir3/file-301.mp3", "dir3/file-302.mpeg"):
        write(env.ctx / "ex" / name, name)
    env.copy("ex", dest="/1", exclude=("*/*.png",))
    assert sorted(os.listdir(env.rootfs / "1/dir1")) == ["file-102.txt"]
    assert sorted(os.listdir(env.rootfs / "1/dir2")) == ["file-201.pdf"]
    env.copy("ex/dir3/", dest="/3/", exclude=("*.mp3",))
    assert os.listdir(env.rootfs / "3") == ["file-302.mpeg"]
    env.copy("ex/dir*", dest="/4/", exclude=("*.mp3", "*.png", "*.pdf", "*.txt"))
    assert os.listdir(env.rootfs / "4") == ["file-302.mpeg"]
    env.copy("ex/dir*", dest="/6", exclude=("*",))
    assert os.listdir(env.rootfs / "6") == []


def test_exclude_with_exception_and_directories(env: Env) -> None:
    env.copy(".", dest="/e/", exclude=("d", "!d/sub", "multi*"))
    assert sorted(os.listdir(env.rootfs / "e")) == ["d", "f.txt", "lnk", "lnkdir"]
    assert os.listdir(env.rootfs / "e/d") == ["sub"]


# -- --parents ---------------------------------------------------------------------------

def test_parents_keeps_source_directories(env: Env) -> None:
    write(env.ctx / "x/a.txt", "xa")
    write(env.ctx / "y/a.txt", "ya")
    os.chmod(env.ctx / "x", 0o750)
    env.copy("./x/a.txt", "./y/a.txt", dest="/no_parents/")
    env.copy("./x/a.txt", "./y/a.txt", dest="/parents/", parents=True)
    assert os.listdir(env.rootfs / "no_parents") == ["a.txt"]
    assert (env.rootfs / "parents/x/a.txt").read_text() == "xa"
    assert (env.rootfs / "parents/y/a.txt").read_text() == "ya"
    assert info(env.rootfs / "parents/x")[0] == 0o750
    assert sorted(os.listdir(env.rootfs / "parents")) == ["x", "y"]


def test_parents_pivot_and_double_star(env: Env) -> None:
    write(env.ctx / "x/y/a.txt")
    write(env.ctx / "x/y/b.txt")
    write(env.ctx / "x/y/c.md")
    write(env.ctx / "src/a.txt")
    write(env.ctx / "src/x/b.txt")
    write(env.ctx / "src/x/y/c.txt")
    write(env.ctx / "src/x/y/d.md")
    env.copy("./x/./y/*.txt", dest="/pivot/", parents=True)
    env.copy("./src/**/*.txt", dest="/star/", parents=True)
    assert sorted(os.listdir(env.rootfs / "pivot")) == ["y"]
    assert sorted(os.listdir(env.rootfs / "pivot/y")) == ["a.txt", "b.txt"]
    found = sorted(str(p.relative_to(env.rootfs / "star"))
                   for p in (env.rootfs / "star").rglob("*") if p.is_file())
    assert found == ["src/a.txt", "src/x/b.txt", "src/x/y/c.txt"]


def test_parents_missing_literal_source_fails(env: Env) -> None:
    assert "'x/nosuch' not found" in env.fails("x/nosuch", dest="/p/", parents=True)


# -- heredocs ----------------------------------------------------------------------------

def test_heredoc_sources(env: Env) -> None:
    env.copy(dest="/h/", heredocs=(("EOF", b"line\n"),))
    env.copy("SCRIPT", dest="/usr/local/bin/run", heredocs=(("SCRIPT", b"#!/bin/sh\n"),),
             chmod="755", chown="app")
    assert (env.rootfs / "h/EOF").read_bytes() == b"line\n"
    assert info(env.rootfs / "h/EOF") == (0o644, 0, 0)
    assert (env.rootfs / "usr/local/bin/run").read_bytes() == b"#!/bin/sh\n"
    assert info(env.rootfs / "usr/local/bin/run") == (0o755, 1000, 1001)
    assert os.listdir(env.scratch) == []


def test_heredoc_and_file_need_directory_destination(env: Env) -> None:
    env.fails("f.txt", dest="/x", heredocs=(("EOF", b"x"),))
    env.copy("f.txt", dest="/x/", heredocs=(("EOF", b"x"),))
    assert sorted(os.listdir(env.rootfs / "x")) == ["EOF", "f.txt"]
