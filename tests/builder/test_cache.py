"""The build cache: CACHED steps, content-keyed COPY, invalidation, concurrency, prune."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builder.cli import main
from builder.store import BuildStore
from tests.builder.test_build import image_tree

DOCKERFILE = (
    "FROM busybox AS base\n"
    "RUN echo RAN-first && echo one > /one\n"
    "ENV GREETING=hi\n"
    "COPY app/ /app/\n"
    "RUN echo RAN-second && cat /app/* > /all\n"
    "FROM busybox\n"
    "COPY --from=base /all /all\n"
    "RUN echo RAN-final && wc -c /all > /size\n"
)


def build(root: Path, ctx: Path, capfd: pytest.CaptureFixture[str], *args: str) -> str:
    rc = main(["--root", str(root), "build", "--progress=plain", "-t", "c:1", *args, str(ctx)])
    out, err = capfd.readouterr()
    assert rc == 0, out + err
    return out + err


def ran(output: str) -> set[str]:
    """The RUN markers whose command executed (its echo reached the output)."""
    return {m for m in ("RAN-first", "RAN-second", "RAN-final") if f" {m}\n" in output}


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app/a.txt").write_text("alpha\n")
    (ctx / "app/b.txt").write_text("beta\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / ".dockerignore").write_text("app/*.log\n")
    return ctx


def manifest(root: Path) -> str:
    with BuildStore.open(root) as store:
        return str(store.images.get("c:1").target.digest)


def test_rebuild_is_cached_and_gives_the_same_image(store_root: Path, ctx: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    first = build(store_root, ctx, capfd)
    assert ran(first) == {"RAN-first", "RAN-second", "RAN-final"}
    digest = manifest(store_root)
    second = build(store_root, ctx, capfd)
    assert ran(second) == set()
    assert second.count("CACHED") == 5  # 2 RUN + COPY in base, COPY + RUN in the final stage
    assert manifest(store_root) == digest


def test_changing_a_source_reruns_only_what_follows_its_copy(
        store_root: Path, ctx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd)
    (ctx / "app/b.txt").write_text("BETA\n")
    assert ran(build(store_root, ctx, capfd)) == {"RAN-second", "RAN-final"}
    with image_tree(store_root, "c:1") as (tree, _):
        assert (tree / "all").read_text() == "alpha\nBETA\n"


def test_same_size_and_mtime_but_new_content_is_rebuilt(
        store_root: Path, ctx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    target = ctx / "app/a.txt"
    build(store_root, ctx, capfd)
    st = target.stat()
    target.write_text("ALPHA\n")  # same size
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    assert ran(build(store_root, ctx, capfd)) == {"RAN-second", "RAN-final"}
    with image_tree(store_root, "c:1") as (tree, _):
        assert (tree / "all").read_text() == "ALPHA\nbeta\n"


def test_mode_change_and_ignored_files(store_root: Path, ctx: Path,
                                       capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd)
    (ctx / "app/debug.log").write_text("ignored\n")
    assert ran(build(store_root, ctx, capfd)) == set()
    (ctx / "app/a.txt").chmod(0o600)
    assert ran(build(store_root, ctx, capfd)) == {"RAN-second", "RAN-final"}


def test_no_cache_and_no_cache_filter(store_root: Path, ctx: Path,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd)
    assert ran(build(store_root, ctx, capfd, "--no-cache")) == {"RAN-first", "RAN-second",
                                                               "RAN-final"}
    assert ran(build(store_root, ctx, capfd, "--no-cache-filter", "base")) == {
        "RAN-first", "RAN-second"}


def test_build_args_and_secrets_in_keys(store_root: Path, tmp_path: Path,
                                        capfd: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "args"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        "FROM busybox\nARG V=1\n"
        "RUN --mount=type=secret,id=s echo RAN-first && echo $V > /v && cat /run/secrets/s\n")
    secret = tmp_path / "secret"
    secret.write_text("one")
    args = ("--secret", f"id=s,src={secret}")
    assert ran(build(store_root, ctx, capfd, *args)) == {"RAN-first"}
    secret.write_text("two")  # a secret's value never enters the key
    assert ran(build(store_root, ctx, capfd, *args)) == set()
    assert ran(build(store_root, ctx, capfd, *args, "--build-arg", "V=2")) == {"RAN-first"}


def test_concurrent_builds_share_one_store(store_root: Path, ctx: Path) -> None:
    argv = [sys.executable, "-m", "builder.cli", "--root", str(store_root), "build",
            "--progress=plain"]
    procs = [subprocess.Popen([*argv, "-t", f"c:{n}", str(ctx)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for n in range(3)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    with BuildStore.open(store_root) as store:
        digests = {str(store.images.get(f"c:{n}").target.digest) for n in range(3)}
        assert {i.kind.value for i in store.snapshots.walk()} == {"committed"}
    for n in range(3):
        with image_tree(store_root, f"c:{n}") as (tree, _):
            assert (tree / "all").read_text() == "alpha\nbeta\n"
    assert len(digests) >= 1


def test_prune_keeps_the_cache_unless_all(store_root: Path, ctx: Path,
                                          capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd)
    assert main(["--root", str(store_root), "rmi", "c:1"]) == 0
    assert main(["--root", str(store_root), "prune", "-f"]) == 0
    capfd.readouterr()
    assert ran(build(store_root, ctx, capfd)) == set()
    assert main(["--root", str(store_root), "prune", "-f", "--keep-storage", "0"]) == 0
    capfd.readouterr()
    assert main(["--root", str(store_root), "rmi", "c:1"]) == 0
    assert main(["--root", str(store_root), "prune", "-f", "-a"]) == 0
    capfd.readouterr()
    assert ran(build(store_root, ctx, capfd)) == {"RAN-first", "RAN-second", "RAN-final"}


def test_local_cache_export_lets_a_fresh_store_rebuild_nothing(
        store_root: Path, seeded: Path, tmp_path: Path, ctx: Path,
        capfd: pytest.CaptureFixture[str]) -> None:
    import shutil

    exported = tmp_path / "exported-cache"
    build(store_root, ctx, capfd, "--cache-to", f"type=local,dest={exported},mode=max")
    assert (exported / "index.json").exists()
    runner_b = tmp_path / "runner-b"
    shutil.copytree(seeded, runner_b, symlinks=True)
    out = build(runner_b, ctx, capfd, "--cache-from", f"type=local,src={exported}")
    assert ran(out) == set()
    assert manifest(runner_b) == manifest(store_root)
    (ctx / "app/a.txt").write_text("changed\n")
    runner_c = tmp_path / "runner-c"
    shutil.copytree(seeded, runner_c, symlinks=True)
    out = build(runner_c, ctx, capfd, "--cache-from", f"type=local,src={exported}")
    assert ran(out) == {"RAN-second", "RAN-final"}
    with image_tree(runner_c, "c:1") as (tree, _):
        assert (tree / "all").read_text() == "changed\nbeta\n"


def test_min_mode_exports_only_the_target_stages(store_root: Path, seeded: Path,
                                                 tmp_path: Path, ctx: Path,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    import shutil

    exported = tmp_path / "min-cache"
    build(store_root, ctx, capfd, "--cache-to", f"type=local,dest={exported}")
    runner_b = tmp_path / "runner-b"
    shutil.copytree(seeded, runner_b, symlinks=True)
    out = build(runner_b, ctx, capfd, "--cache-from", f"type=local,src={exported}")
    # the final stage's steps are cached; the base stage is not exported in mode=min, so
    # it runs again and (producing the same files) the final stage stays cached
    assert "RAN-final" not in ran(out) and "RAN-first" in ran(out)
