"""Path resolution inside a root and source selection (Go filepath.Match, .dockerignore)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from builder.errors import DockerfileError
from builder.fileops.sources import BadPattern, contains_wildcards, match, select_sources
from builder.frontend.dockerignore import DockerIgnore
from layerstore.rootpath import clean, relative_to_root, resolve, split

# -- rootpath ----------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/lib").mkdir(parents=True)
    (r / "etc").mkdir()
    (r / "etc/passwd").write_text("x")
    os.symlink("/usr/lib", r / "lib")
    os.symlink("../../../..", r / "usr/up")
    os.symlink(os.fspath(tmp_path), r / "abs")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("passwd", r / "etc/pw")
    return r


def test_split_and_clean() -> None:
    assert split("/../a/./b/../c/") == ["a", "c"]
    assert clean("a/../../b/") == "/b"
    assert clean("") == "/"


@pytest.mark.parametrize(("path", "expected"), [
    ("/", ""), ("..", ""), ("/../../etc", "etc"), ("lib/x.so", "usr/lib/x.so"),
    ("usr/up/etc/passwd", "etc/passwd"), ("usr/up/../../usr", "usr"),
    ("missing/../etc", "etc"), ("lib/missing/a/../b", "usr/lib/missing/b"),
    ("etc/pw", "etc/passwd"), ("etc/passwd/x", "etc/passwd/x"),
])
def test_resolve_stays_inside(root: Path, path: str, expected: str) -> None:
    assert resolve(root, path) == (root / expected if expected else root)


def test_absolute_symlink_restarts_at_root(root: Path, tmp_path: Path) -> None:
    inside = resolve(root, "abs/root/etc")
    assert inside == root / os.fspath(tmp_path).lstrip("/") / "root/etc"


def test_resolve_without_following_last(root: Path) -> None:
    assert resolve(root, "lib", follow=False) == root / "lib"
    assert resolve(root, "lib/", follow=False) == root / "lib"
    assert resolve(root, "lib/x", follow=False) == root / "usr/lib/x"


def test_resolve_loop(root: Path) -> None:
    with pytest.raises(OSError) as caught:
        resolve(root, "loop1/x")
    assert caught.value.errno == errno.ELOOP


def test_relative_to_root(root: Path) -> None:
    assert relative_to_root(root, root / "a/b") == "/a/b"
    assert relative_to_root(root, root) == "/"


# -- Go filepath.Match -------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "ab/c", False), ("a*/b", "abc/b", True), ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abe", True), ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False), ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True),
    ("*x", "xxx", True), ("[\\-]", "-", True), ("[x\\-]", "z", False),
    ("*.txt", ".hidden.txt", True), ("a?", "a/", False),
])
def test_match(pattern: str, name: str, expected: bool) -> None:
    assert match(pattern, name) is expected


@pytest.mark.parametrize("pattern", ["[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]",
                                     "[a-b-c]", "a\\", "*x["])
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(BadPattern):
        match(pattern, "a")


def test_contains_wildcards() -> None:
    assert contains_wildcards("a*") and contains_wildcards("[ab]") and contains_wildcards("?")
    assert not contains_wildcards("a\\*b") and not contains_wildcards("plain/path")


# -- select_sources ----------------------------------------------------------------------

@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    for name in ("a.txt", "b.txt", "c.md", "arr[0].txt", "star*", "src/x/one.py",
                 "src/y/two.py", "src/y/three.txt", "node_modules/m/i.js", ".hidden"):
        (c / name).parent.mkdir(parents=True, exist_ok=True)
        (c / name).write_text(name)
    os.symlink("src", c / "srclink")
    os.symlink("/etc/passwd", c / "escape")
    return c


def rels(ctx: Path, pattern: str, ignore: DockerIgnore | None = None) -> list[str]:
    return [s.relpath for s in select_sources(ctx, pattern, ignore=ignore)]


def test_select_literal_and_root(ctx: Path) -> None:
    assert rels(ctx, "a.txt") == ["a.txt"]
    assert rels(ctx, ".") == ["."]
    assert rels(ctx, "/src/") == ["src"]
    assert rels(ctx, "../../a.txt") == ["a.txt"]
    assert select_sources(ctx, "srclink")[0].path == ctx / "src"


def test_select_wildcards(ctx: Path) -> None:
    assert rels(ctx, "*.txt") == ["a.txt", "arr[0].txt", "b.txt"]
    assert rels(ctx, "?.*") == ["a.txt", "b.txt", "c.md"]
    assert rels(ctx, "[ab].txt") == ["a.txt", "b.txt"]
    assert rels(ctx, "arr[[]0].txt") == ["arr[0].txt"]
    assert rels(ctx, "star\\*") == ["star*"]
    assert rels(ctx, "src/*/*.py") == ["src/x/one.py", "src/y/two.py"]
    assert rels(ctx, "*/y") == ["src/y"]
    assert rels(ctx, ".h*") == [".hidden"]


def test_wildcard_prefix_follows_symlinks_but_components_do_not(ctx: Path) -> None:
    assert rels(ctx, "srclink/*/two.py") == ["src/y/two.py"]
    assert rels(ctx, "src*/x") == ["src/x"]


def test_wildcard_without_match_is_empty(ctx: Path) -> None:
    assert rels(ctx, "*.nothing") == []
    assert rels(ctx, "nodir/*.txt") == []


def test_bad_wildcard_pattern(ctx: Path) -> None:
    with pytest.raises(DockerfileError, match="invalid source pattern"):
        select_sources(ctx, "[a-")


def test_missing_literal(ctx: Path) -> None:
    with pytest.raises(DockerfileError) as caught:
        select_sources(ctx, "src/z/one.py")
    assert str(caught.value) == ("Dockerfile: 'src/z/one.py' not found in the build context; "
                                 "'src' contains: x/, y/")
    with pytest.raises(DockerfileError, match="'escape' not found"):
        select_sources(ctx, "escape")
    with pytest.raises(DockerfileError, match="not found in the source stage or image"):
        select_sources(ctx, "nosuch", context=False)


def test_dockerignore_hides_sources(ctx: Path) -> None:
    ignore = DockerIgnore.parse("*.txt\n!b.txt\nnode_modules\nsrc/y\n!src/y/two.py\n")
    assert rels(ctx, "*.txt", ignore) == ["b.txt"]
    assert rels(ctx, "src/*/*", ignore) == ["src/x/one.py", "src/y/two.py"]
    assert rels(ctx, "src/y", ignore) == ["src/y"]
    with pytest.raises(DockerfileError) as caught:
        select_sources(ctx, "a.txt", ignore=ignore)
    message = str(caught.value)
    assert "(or excluded by .dockerignore)" in message
    assert "a.txt," not in message and "b.txt" in message
    with pytest.raises(DockerfileError):
        select_sources(ctx, "node_modules/m/i.js", ignore=ignore)


def test_resolve_loop_is_named_a_symlink_loop(root: Path) -> None:
    with pytest.raises(OSError, match="symlink loop"):
        resolve(root, "loop1/x")
