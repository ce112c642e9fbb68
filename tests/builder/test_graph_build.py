"""Builds through the op graph: shared ops run once, unused stages are never resolved, bad
mounts fail before anything runs, cache keys follow the content ops read."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.store import BuildStore
from tests.builder.test_build import build, image_tree


def _cache_keys(root: Path) -> set[str]:
    with BuildStore.open(root) as store:
        return {r.key for r in store.cache.records()}


def test_op_shared_by_two_stages_runs_once(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    shared = "RUN --mount=type=cache,target=/count,id=runs sh -c 'echo run >> /count/log'\n"
    rc = build(store_root, ctx, (
        "FROM busybox AS a\n" + shared + "RUN echo a > /a\n"
        "FROM busybox AS b\n" + shared + "RUN echo b > /b\n"
        "FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"
        "RUN --mount=type=cache,target=/count,id=runs cp /count/log /runs\n"),
        "-t", "shared:1", "--no-cache")
    assert rc == 0
    with image_tree(store_root, "shared:1") as (tree, _):
        assert (tree / "runs").read_text() == "run\n"
        assert (tree / "a").read_text() == "a\n" and (tree / "b").read_text() == "b\n"


def test_unused_stage_base_is_never_resolved(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    rc = build(store_root, ctx, (
        "FROM registry.invalid/nowhere:1 AS docs\nRUN false\n"
        "FROM busybox\nRUN echo ok > /ok\n"), "-t", "unused:1")
    assert rc == 0
    with image_tree(store_root, "unused:1") as (tree, _):
        assert (tree / "ok").read_text() == "ok\n"


def test_bad_mount_fails_before_anything_runs(store_root: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    before = _cache_keys(store_root)
    rc = build(store_root, ctx, (
        "FROM busybox\nRUN echo first > /first\n"
        "RUN --mount=type=cache,target=/c,uid=nobody true\n"), "-t", "badmount:1")
    assert rc != 0
    err = capsys.readouterr().err
    assert "Dockerfile:3: --mount=type=cache,target=/c,uid=nobody: invalid value 'nobody' " \
        "for uid" in err
    assert "RUN echo first" not in err
    assert _cache_keys(store_root) == before  # not even the first RUN ran


def test_bind_mount_source_content_is_in_the_key(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "input.txt").write_text("one\n")
    dockerfile = ("FROM busybox\n"
                  "RUN --mount=type=bind,source=input.txt,target=/in cp /in /out\n")
    assert build(store_root, ctx, dockerfile, "-t", "bind:1") == 0
    assert build(store_root, ctx, dockerfile, "-t", "bind:2") == 0
    (ctx / "input.txt").write_text("two\n")
    assert build(store_root, ctx, dockerfile, "-t", "bind:3") == 0
    with image_tree(store_root, "bind:2") as (tree, two):
        assert (tree / "out").read_text() == "one\n"
    with image_tree(store_root, "bind:1") as (_, one):
        assert one.manifest.digest == two.manifest.digest  # cached
    with image_tree(store_root, "bind:3") as (tree, _):
        assert (tree / "out").read_text() == "two\n"


def test_copy_link_layer_does_not_depend_on_the_base(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src/app.txt").write_text("app\n")
    template = ("FROM busybox\nRUN echo {} > /base\nWORKDIR /srv\n"
                "COPY --link --chown=7:7 src/ /srv/app/\n")
    assert build(store_root, ctx, template.format(1), "-t", "link:1") == 0
    keys = _cache_keys(store_root)
    assert build(store_root, ctx, template.format(2), "-t", "link:2") == 0
    with image_tree(store_root, "link:1") as (tree, _):
        assert (tree / "base").read_text() == "1\n"
        assert (tree / "srv/app/app.txt").read_text() == "app\n"
        assert (tree / "srv/app/app.txt").stat().st_uid == 7
        assert (tree / "bin/busybox").exists()
    with image_tree(store_root, "link:2") as (tree, _):
        assert (tree / "base").read_text() == "2\n"
        assert (tree / "srv/app/app.txt").read_text() == "app\n"
    layers = [_layers(store_root, name) for name in ("link:1", "link:2")]
    assert layers[0][-1] == layers[1][-1]  # the same COPY --link layer blob
    assert layers[0][-3] != layers[1][-3]  # the RUN layers differ
    # the copy onto an empty filesystem was reused, only the merge is new
    new = _cache_keys(store_root) - keys
    assert len(new) == 3  # RUN, WORKDIR and the merge; no new copy


def _layers(root: Path, name: str) -> list[str]:
    from layerstore.assembly import load_image
    from layerstore.oci import Manifest
    from layerstore.walk import load_manifest

    with BuildStore.open(root) as store:
        stored = load_image(store.content, store.images.get(name).target)
        manifest = load_manifest(store.content, stored.manifest)
        assert isinstance(manifest, Manifest)
        return [str(d.digest) for d in manifest.layers]


def test_step_shared_by_stages_is_exported_with_each() -> None:
    from builder.remotecache import CachedStep, StepLog

    log = StepLog()
    log.add(CachedStep("k1", (), "t", True, stage=0))
    log.add(CachedStep("k1", (), "t", True, stage=2))
    log.add(CachedStep("k2", (), "t", True, stage=1))
    assert [s.key for s in log.steps({2})] == ["k1"]
    assert [s.key for s in log.steps({1})] == ["k2"]
    assert [s.key for s in log.steps()] == ["k1", "k2"]


def test_copy_from_a_missing_image_names_its_line(store_root: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    rc = build(store_root, ctx, "FROM busybox\nRUN true\nCOPY --from=ghost:1 /x /x\n",
               "-t", "ghost:1")
    assert rc != 0
    assert "Dockerfile:3: --from=ghost:1: no stage or image named 'ghost:1'" in \
        capsys.readouterr().err


def test_copy_from_an_image_while_stages_run(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    rc = build(store_root, ctx, "FROM scratch AS a\nCOPY --from=busybox /bin/busybox /bb\n"
               "FROM busybox\nRUN echo b > /b\nCOPY --from=a /bb /bin/bb\n"
               "COPY --from=busybox /bin/busybox /bin/bb2\n", "-t", "fromimg:1")
    assert rc == 0
    with image_tree(store_root, "fromimg:1") as (tree, _):
        assert (tree / "bin/bb").read_bytes() == (tree / "bin/bb2").read_bytes()
