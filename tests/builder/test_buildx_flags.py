"""buildx's flags on ``pybuild build``: ``--build-context`` (named contexts for ``FROM``,
``COPY --from`` and ``RUN --mount from=``, as a local directory, an image, an OCI layout or
another stage) and ``--annotation``; and the errors of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.store import BuildStore
from layerstore.layout import LayoutEntry, write_layout
from layerstore.walk import load_manifest
from tests.builder.test_build import build, image_tree


def _context(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    for rel, text in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
    return directory


def _read(root: Path, tag: str, *paths: str) -> list[str]:
    with image_tree(root, tag) as (tree, _):
        return [(tree / p.lstrip("/")).read_text() for p in paths]


def test_a_local_directory_serves_copy_from_mounts_and_from(store_root: Path,
                                                            tmp_path: Path) -> None:
    ctx = _context(tmp_path, "ctx", {"main.txt": "main\n"})
    docs = _context(tmp_path, "docs", {"guide.md": "guide\n", "skip.tmp": "x",
                                       ".dockerignore": "*.tmp\n"})
    rootfs = _context(tmp_path, "rootfs", {"etc/from-dir": "rootfs\n"})
    dockerfile = (
        "FROM rootfs AS base\n"
        "FROM busybox\n"
        "COPY main.txt /main.txt\n"
        "COPY --from=docs / /docs/\n"
        "RUN --mount=from=docs,target=/mnt cat /mnt/guide.md > /mounted\n"
        "COPY --from=base /etc/from-dir /from-dir\n")
    assert build(store_root, ctx, dockerfile, "-t", "named:1",
                 "--build-context", f"docs={docs}",
                 "--build-context", f"rootfs={rootfs}") == 0
    assert _read(store_root, "named:1", "/main.txt", "/docs/guide.md", "/mounted",
                 "/from-dir") == ["main\n", "guide\n", "guide\n", "rootfs\n"]
    with image_tree(store_root, "named:1") as (tree, stored):
        assert not (tree / "docs/skip.tmp").exists()
        assert (tree / "docs/guide.md").stat().st_uid == 0
        assert len(stored.image.rootfs.diff_ids) == len(stored.image.history) == 5


def test_a_changed_named_context_reruns_what_reads_it(store_root: Path,
                                                      tmp_path: Path) -> None:
    ctx = _context(tmp_path, "ctx", {})
    docs = _context(tmp_path, "docs", {"a": "one\n"})
    dockerfile = "FROM busybox\nCOPY --from=docs a /a\n"
    flag = ("--build-context", f"docs={docs}")
    assert build(store_root, ctx, dockerfile, "-t", "changed:1", *flag) == 0
    (docs / "a").write_text("two\n")
    assert build(store_root, ctx, dockerfile, "-t", "changed:2", *flag) == 0
    assert _read(store_root, "changed:1", "/a") == ["one\n"]
    assert _read(store_root, "changed:2", "/a") == ["two\n"]


def test_a_context_takes_the_place_of_a_stage_of_its_name(store_root: Path,
                                                          tmp_path: Path) -> None:
    ctx = _context(tmp_path, "ctx", {})
    src = _context(tmp_path, "src", {"f": "from-context\n"})
    dockerfile = ("FROM busybox AS src\nRUN echo from-stage > /f\n"
                  "FROM busybox\nCOPY --from=src /f /f\n")
    assert build(store_root, ctx, dockerfile, "-t", "over:1",
                 "--build-context", f"src={src}") == 0
    assert _read(store_root, "over:1", "/f") == ["from-context\n"]


def test_an_image_and_a_stage_by_name(store_root: Path, tmp_path: Path) -> None:
    ctx = _context(tmp_path, "ctx", {})
    dockerfile = ("FROM alpine AS builder\nRUN echo built > /built\n"
                  "FROM base\nRUN cat /built > /copied\n")
    assert build(store_root, ctx, dockerfile, "-t", "image:1",
                 "--build-context", "alpine=docker-image://busybox:latest",
                 "--build-context", "base=target:builder") == 0
    assert _read(store_root, "image:1", "/copied") == ["built\n"]


def test_an_oci_layout_by_tag_and_by_digest(store_root: Path, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with BuildStore.open(store_root) as store:
        target = store.images.get("busybox:latest").target
        write_layout(layout, store.content, [LayoutEntry("v1", target)])
    ctx = _context(tmp_path, "ctx", {})
    dockerfile = "FROM base\nRUN echo on-layout > /on\n"
    assert build(store_root, ctx, dockerfile, "-t", "layout:1",
                 "--build-context", f"base=oci-layout://{layout}:v1") == 0
    assert build(store_root, ctx, dockerfile, "-t", "layout:2",
                 "--build-context", f"base=oci-layout://{layout}@{target.digest}") == 0
    assert _read(store_root, "layout:1", "/on") == _read(store_root, "layout:2", "/on") == \
        ["on-layout\n"]


@pytest.mark.parametrize(("flag", "message"), [
    ("src=git://example.com/repo.git", "--build-context 'src=git://example.com/repo.git': "
     "unsupported context source 'git'"),
    ("src", "--build-context 'src': expected NAME=VALUE"),
    ("src=./missing", "--build-context 'src=./missing': ./missing is not a directory"),
    ("src=oci-layout://./ctx", "--build-context 'src=oci-layout://./ctx': ctx is not an OCI "
     "image layout directory"),
    ("context=./ctx", "the name 'context' is the build context's own"),
    ("src=target:", "target: needs a stage name"),
])
def test_bad_values_name_the_flag(store_root: Path, tmp_path: Path, flag: str, message: str,
                                  capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _context(tmp_path, "ctx", {})
    monkeypatch.chdir(tmp_path)
    assert build(store_root, ctx, "FROM busybox\nCOPY --from=src / /\n", "-t", "bad:1",
                 "--build-context", flag) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_target_context_must_name_an_earlier_stage(store_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "ctx", {})
    assert build(store_root, ctx, "FROM busybox\nCOPY --from=src / /x/\nFROM busybox AS late\n",
                 "--target", "0", "--build-context", "src=target:late") == 1
    err = capsys.readouterr().err
    assert "Dockerfile:2:" in err and "--build-context src=target:late: stage 'late' is defined " \
        "later in the file" in err
    assert build(store_root, ctx, "FROM busybox\nCOPY --from=src / /x/\n",
                 "--build-context", "src=target:nowhere") == 1
    assert "stage 'nowhere' does not exist" in capsys.readouterr().err


def test_the_same_name_twice_is_refused(store_root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "ctx", {})
    assert build(store_root, ctx, "FROM busybox\n", "--build-context", f"a={ctx}",
                 "--build-context", f"A={ctx}") == 1
    assert "--build-context 'a' is given more than once" in capsys.readouterr().err


def test_annotations_go_on_the_manifest(store_root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "ctx", {})
    assert build(store_root, ctx, "FROM busybox\n", "-t", "ann:1",
                 "--annotation", "org.opencontainers.image.source=https://example.com/app",
                 "--annotation", "manifest:team=build") == 0
    with BuildStore.open(store_root) as store:
        target = store.images.get("ann:1").target
        manifest = load_manifest(store.content, target)
    assert manifest.annotations == {  # type: ignore[union-attr]
        "org.opencontainers.image.source": "https://example.com/app", "team": "build"}
    assert build(store_root, ctx, "FROM busybox\n", "--annotation", "index:a=b") == 1
    assert "index annotations need an image index" in capsys.readouterr().err
    assert build(store_root, ctx, "FROM busybox\n", "--annotation", "manifest-descriptor:a=b") \
        == 1
    assert "manifest-descriptor annotations are not supported" in capsys.readouterr().err
    assert build(store_root, ctx, "FROM busybox\n", "--annotation", "novalue") == 1
    assert "--annotation 'novalue': expected [TYPE:]KEY=VALUE" in capsys.readouterr().err


def test_cacheonly_fills_the_cache_and_names_nothing(store_root: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, "ctx", {})
    dockerfile = "FROM busybox\nRUN echo warm > /warm\n"
    with BuildStore.open(store_root) as store:
        before = sorted(r.name for r in store.images.list())
    assert build(store_root, ctx, dockerfile, "-o", "type=cacheonly") == 0
    with BuildStore.open(store_root) as store:
        assert sorted(r.name for r in store.images.list()) == before
    capsys.readouterr()
    assert build(store_root, ctx, dockerfile, "-t", "warm:1") == 0
    assert "CACHED" in capsys.readouterr().err
    assert build(store_root, ctx, dockerfile, "-o", "type=cacheonly", "-t", "x:1") == 1
    assert "type=cacheonly only fills the build cache" in capsys.readouterr().err
    assert build(store_root, ctx, dockerfile, "-o", "type=cacheonly,dest=x") == 1
    assert "type=cacheonly exports nothing" in capsys.readouterr().err
