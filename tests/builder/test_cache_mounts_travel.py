"""Cache mounts that travel: ``--cache-to ...,cache-mounts=true`` exports the contents of
``RUN --mount=type=cache`` directories with the build cache, and a fresh store restores them
from ``--cache-from`` before a RUN that mounts them must run again. A RUN stands in for a
package manager: it "downloads" a package only when the cache mount lacks it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from registry.testing.processes import distribution
from tests.builder.test_build import build, image_tree

DOCKERFILE = """\
FROM busybox
COPY wanted.txt /wanted.txt
RUN --mount=type=cache,target=/var/cache/pkgs,id=pkgs \\
    for p in $(cat /wanted.txt); do \\
      if [ -f /var/cache/pkgs/$p ]; then echo "$p" >> /reused; \\
      else echo "$p" >> /downloaded; echo "package $p" > /var/cache/pkgs/$p; fi; \\
      cp /var/cache/pkgs/$p /installed-$p; \\
    done; touch /reused /downloaded
"""


def _ctx(tmp_path: Path, packages: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "wanted.txt").write_text(packages)
    return ctx


def _runner(tmp_path: Path, seeded: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(seeded, root, symlinks=True)
    return root


def _lists(root: Path, tag: str) -> tuple[list[str], list[str]]:
    with image_tree(root, tag) as (tree, _):
        return ((tree / "downloaded").read_text().split(),
                (tree / "reused").read_text().split())


@pytest.mark.parametrize("kind", ["local", "registry"])
def test_a_fresh_runner_reuses_what_the_cache_mount_held(store_root: Path, seeded: Path,
                                                         tmp_path: Path, kind: str,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    registry = distribution(tmp_path / "dist").start() if kind == "registry" else None
    try:
        if registry is not None:
            to = f"type=registry,ref={registry.address}/app/cache:main,mode=max"
            frm = f"type=registry,ref={registry.address}/app/cache:main"
        else:
            to = f"type=local,dest={tmp_path / 'cache'},mode=max"
            frm = f"type=local,src={tmp_path / 'cache'}"
        ctx = _ctx(tmp_path, "alpha\nbeta\n")
        assert build(store_root, ctx, DOCKERFILE, "-t", "app:1",
                     "--cache-to", to + ",cache-mounts=true") == 0
        assert _lists(store_root, "app:1") == (["alpha", "beta"], [])

        ctx = _ctx(tmp_path, "alpha\nbeta\ngamma\n")
        runner_b = _runner(tmp_path, seeded, "runner-b")
        capsys.readouterr()
        assert build(runner_b, ctx, DOCKERFILE, "-t", "app:2", "--cache-from", frm) == 0
        assert "restored cache mount 'pkgs'" in capsys.readouterr().err
        assert _lists(runner_b, "app:2") == (["gamma"], ["alpha", "beta"])
        with image_tree(runner_b, "app:2") as (tree, _):
            assert (tree / "installed-alpha").read_text() == "package alpha\n"
    finally:
        if registry is not None:
            registry.stop()


def test_without_cache_mounts_a_fresh_runner_downloads_everything(
        store_root: Path, seeded: Path, tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "alpha\nbeta\n")
    cache = tmp_path / "cache"
    assert build(store_root, ctx, DOCKERFILE, "-t", "app:1",
                 "--cache-to", f"type=local,dest={cache},mode=max") == 0
    ctx = _ctx(tmp_path, "alpha\nbeta\ngamma\n")
    runner_b = _runner(tmp_path, seeded, "runner-b")
    assert build(runner_b, ctx, DOCKERFILE, "-t", "app:2",
                 "--cache-from", f"type=local,src={cache}") == 0
    assert _lists(runner_b, "app:2") == (["alpha", "beta", "gamma"], [])


def test_a_cached_step_restores_nothing_and_a_local_mount_wins(
        store_root: Path, seeded: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _ctx(tmp_path, "alpha\n")
    cache = tmp_path / "cache"
    flag = f"type=local,dest={cache},mode=max,cache-mounts=true"
    assert build(store_root, ctx, DOCKERFILE, "-t", "app:1", "--cache-to", flag) == 0
    runner_b = _runner(tmp_path, seeded, "runner-b")
    capsys.readouterr()
    assert build(runner_b, ctx, DOCKERFILE, "-t", "app:1",
                 "--cache-from", f"type=local,src={cache}") == 0
    assert "restored cache mount" not in capsys.readouterr().err
    ctx = _ctx(tmp_path, "alpha\nbeta\n")
    assert build(store_root, ctx, DOCKERFILE, "-t", "app:2",
                 "--cache-from", f"type=local,src={cache}") == 0
    assert "restored cache mount" not in capsys.readouterr().err
    assert _lists(store_root, "app:2") == (["beta"], ["alpha"])


def test_a_mount_over_the_size_limit_is_left_out(store_root: Path, seeded: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _ctx(tmp_path, "alpha\n")
    cache = tmp_path / "cache"
    assert build(store_root, ctx, DOCKERFILE, "-t", "app:1", "--cache-to",
                 f"type=local,dest={cache},mode=max,cache-mounts=true,"
                 "cache-mounts-max-size=4") == 0
    assert "cache mount 'pkgs' is 14 bytes, over cache-mounts-max-size (4); not exported" \
        in capsys.readouterr().err
    ctx = _ctx(tmp_path, "alpha\nbeta\n")
    runner_b = _runner(tmp_path, seeded, "runner-b")
    assert build(runner_b, ctx, DOCKERFILE, "-t", "app:2",
                 "--cache-from", f"type=local,src={cache}") == 0
    assert _lists(runner_b, "app:2") == (["alpha", "beta"], [])


@pytest.mark.parametrize(("flag", "message"), [
    ("--cache-to", "type=local,dest=x,cache-mounts=maybe"),
    ("--cache-to", "type=inline,cache-mounts=true"),
    ("--cache-from", "type=local,src=x,cache-mounts=true"),
    ("--cache-to", "type=local,dest=x,cache-mounts=true,cache-mounts-max-size=lots"),
])
def test_bad_cache_mount_attributes(store_root: Path, tmp_path: Path, flag: str, message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    ctx = _ctx(tmp_path, "alpha\n")
    assert build(store_root, ctx, DOCKERFILE, flag, message) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag} {message!r}"), err
