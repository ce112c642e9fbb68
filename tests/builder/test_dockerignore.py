""".dockerignore parsing and matching follow moby/patternmatcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import ContextError
from builder.frontend.dockerignore import DockerIgnore, clean_path, find_dockerignore

pytestmark = pytest.mark.unit

RULES = """\
# comment

*.md
!README.md
/build/
./tmp
**/*.pyc
node_modules
!node_modules/keep
docs/**/draft?.txt
data/[a-c]*.csv
data/[!a]x
esc\\*star
  spaced
"""


@pytest.fixture
def ignore() -> DockerIgnore:
    return DockerIgnore.parse(RULES)


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("a.md", True),
        ("README.md", False),
        ("sub/a.md", False),
        ("build", True),
        ("build/out/x", True),
        ("/build/x", True),
        ("./build", True),
        ("tmp/a", True),
        ("c.pyc", True),
        ("a/b/c.pyc", True),
        ("node_modules/lib/x.js", True),
        ("node_modules/keep", False),
        ("node_modules/keep/deep/x", False),
        ("docs/draft1.txt", True),
        ("docs/a/b/draft2.txt", True),
        ("docs/a/draft10.txt", False),
        ("data/b1.csv", True),
        ("data/d1.csv", False),
        ("data/bx", True),
        ("data/ax", False),
        ("esc*star", True),
        ("escXstar", False),
        ("spaced", True),
        ("src/main.py", False),
        ("# comment", False),
    ],
)
def test_excluded(ignore: DockerIgnore, path: str, excluded: bool) -> None:
    assert ignore.excluded(path) is excluded


def test_last_match_wins() -> None:
    rules = DockerIgnore.parse("*\n!keep\nkeep/secret\n")
    assert rules.excluded("x")
    assert not rules.excluded("keep/a")
    assert rules.excluded("keep/secret")
    assert rules.excluded("keep/secret/deeper")


def test_double_star_alone_matches_everything() -> None:
    rules = DockerIgnore.parse("**\n!src/**\n")
    assert rules.excluded("a/b")
    assert not rules.excluded("src/x/y")


def test_must_descend(ignore: DockerIgnore) -> None:
    assert ignore.must_descend("src")
    assert ignore.must_descend("node_modules")
    assert not ignore.must_descend("build")
    assert not ignore.must_descend("tmp")
    rules = DockerIgnore.parse("vendor\n!**/LICENSE\n")
    assert rules.must_descend("vendor")


def test_patterns_are_cleaned() -> None:
    rules = DockerIgnore.parse("/a/../b/\n")
    assert rules.patterns[0].text == "b"
    assert clean_path("./x//y/") == "x/y"
    assert clean_path("/") == "/"
    assert clean_path("") == "."


@pytest.mark.parametrize("bad", ["!", "[abc", "a[\\"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(ContextError):
        DockerIgnore.parse(bad + "\n")


def test_byte_order_mark_and_spaces_are_ignored() -> None:
    rules = DockerIgnore.parse("\ufeffa.txt\n  b.txt  \n!  b.txt\n")
    assert rules.excluded("a.txt")
    assert not rules.excluded("b.txt")


def test_empty_rules_exclude_nothing() -> None:
    assert not DockerIgnore.load(None).excluded("anything")


def test_find_dockerignore(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    dockerfile = tmp_path / "build" / "app.Dockerfile"
    dockerfile.parent.mkdir()
    dockerfile.write_text("FROM a\n")
    assert find_dockerignore(context, dockerfile) is None
    (context / ".dockerignore").write_text("x\n")
    assert find_dockerignore(context, dockerfile) == context / ".dockerignore"
    specific = tmp_path / "build" / "app.Dockerfile.dockerignore"
    specific.write_text("y\n")
    assert find_dockerignore(context, dockerfile) == specific
    assert DockerIgnore.load(specific).excluded("y")


def test_unreadable_file_is_a_context_error(tmp_path: Path) -> None:
    path = tmp_path / ".dockerignore"
    path.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(ContextError):
        DockerIgnore.load(path)
