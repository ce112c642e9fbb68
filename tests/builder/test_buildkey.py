"""The build-level short cut: an unchanged rebuild answers with the stored image, and every
input that changes the result (base image digest with --pull, build args, target, context,
racy edits) makes it build or re-resolve; naming, pushing and exporting always happen."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builder.cli import main
from builder.solver import contenthash
from builder.solver.contenthash import StatCache
from builder.store import BuildStore
from layerstore.assembly import load_image
from registry.testing.processes import RegistryProcess, ours
from tests.builder.test_build import image_tree

DOCKERFILE = (
    "FROM busybox AS one\n"
    "ARG V=1\n"
    "RUN echo RAN-one && echo one-$V > /which\n"
    "FROM busybox AS two\n"
    "COPY app/ /app/\n"
    "RUN echo RAN-two && cat /app/* > /which\n"
)


def build(root: Path, ctx: Path, capfd: pytest.CaptureFixture[str], *args: str) -> str:
    rc = main(["--root", str(root), "build", "--progress=plain", *args, str(ctx)])
    out, err = capfd.readouterr()
    assert rc == 0, out + err
    return out + err


def ran(output: str) -> set[str]:
    return {m for m in ("RAN-one", "RAN-two", "RAN-base") if f" {m}\n" in output}


def entries(root: Path) -> int:
    return len(list((root / "buildkeys").glob("*.json")))


def digest_of(root: Path, name: str) -> str:
    with BuildStore.open(root) as store:
        return str(store.images.get(name).target.digest)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "app/a.txt").write_text("alpha\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    proc = ours(tmp_path / "registry").start()
    try:
        yield proc
    finally:
        proc.stop()


def test_unchanged_rebuild_takes_the_short_cut_and_still_names(
        store_root: Path, ctx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd, "-t", "k:1")
    assert entries(store_root) == 1
    out = build(store_root, ctx, capfd, "-t", "k:2", "-t", "k:3")
    assert ran(out) == set() and "CACHED" in out
    assert entries(store_root) == 1  # the same key: no second entry
    assert digest_of(store_root, "k:1") == digest_of(store_root, "k:2") == digest_of(
        store_root, "k:3")


def test_changed_build_arg_and_target_rebuild(store_root: Path, ctx: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd, "-t", "k:1", "--target", "one")
    assert ran(build(store_root, ctx, capfd, "-t", "k:1", "--target", "one",
                     "--build-arg", "V=2")) == {"RAN-one"}
    with image_tree(store_root, "k:1") as (tree, _):
        assert (tree / "which").read_text() == "one-2\n"
    assert ran(build(store_root, ctx, capfd, "-t", "k:1", "--target", "one")) == set()
    with image_tree(store_root, "k:1") as (tree, _):
        assert (tree / "which").read_text() == "one-1\n"
    build(store_root, ctx, capfd, "-t", "k:1", "--target", "two")
    with image_tree(store_root, "k:1") as (tree, _):
        assert (tree / "which").read_text() == "alpha\n"


def test_context_edits_rebuild_even_with_an_old_stat_cache(
        store_root: Path, ctx: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # every entry trusted at once: only inode, size, mtime and ctime protect against reuse
    monkeypatch.setattr(contenthash, "RACY_NS", -10**12)
    target = ctx / "app/a.txt"
    build(store_root, ctx, capfd, "-t", "k:1")
    assert ran(build(store_root, ctx, capfd, "-t", "k:1")) == set()
    st = target.stat()
    target.write_text("ALPHA\n")  # same size, mtime put back
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ran(build(store_root, ctx, capfd, "-t", "k:1")) == {"RAN-two"}
    with image_tree(store_root, "k:1") as (tree, _):
        assert (tree / "which").read_text() == "ALPHA\n"
    target.chmod(0o600)
    assert ran(build(store_root, ctx, capfd, "-t", "k:1")) == {"RAN-two"}
    (ctx / "app/new.txt").write_text("new\n")
    assert ran(build(store_root, ctx, capfd, "-t", "k:1")) == {"RAN-two"}
    with image_tree(store_root, "k:1") as (tree, _):
        assert (tree / "which").read_text() == "ALPHA\nnew\n"
    (ctx / ".dockerignore").write_text("app/new.txt\n")
    build(store_root, ctx, capfd, "-t", "k:1")  # the steps made before the new file: cached
    with image_tree(store_root, "k:1") as (tree, _):
        assert (tree / "which").read_text() == "ALPHA\n"


def test_stat_cache_reuses_only_matching_old_entries(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "f"
    f.write_text("content\n")
    cache_file = tmp_path / "stat.json"
    fresh = StatCache(cache_file)
    real = fresh.digest("f", str(f), f.lstat())
    fresh.save()
    assert not cache_file.exists()  # just written: too recent to keep (racy)
    monkeypatch.setattr(contenthash, "RACY_NS", -10**12)
    old = StatCache(cache_file)
    old.digest("f", str(f), f.lstat())
    old.save()
    doc = json.loads(cache_file.read_text())
    doc["files"]["f"][4] = "0" * 64  # a kept entry is believed while the stamp matches
    cache_file.write_text(json.dumps(doc))
    contenthash._memo.clear()
    assert StatCache(cache_file).digest("f", str(f), f.lstat()) == "0" * 64
    f.chmod(0o600)  # ctime moves: the entry no longer matches
    contenthash._memo.clear()
    assert StatCache(cache_file).digest("f", str(f), f.lstat()) == real


def test_short_cut_still_pushes_and_exports(store_root: Path, ctx: Path, tmp_path: Path,
                                            registry: RegistryProcess,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    flags = ("--insecure-registry", registry.address)
    build(store_root, ctx, capfd, "-t", f"{registry.address}/app/a:1", "--push", *flags)
    out_dir = tmp_path / "out"
    out = build(store_root, ctx, capfd, "-t", f"{registry.address}/app/b:1", "--push", *flags,
                "--output", f"type=local,dest={out_dir}")
    assert ran(out) == set()
    assert (out_dir / "which").read_text() == "alpha\n"
    expected = digest_of(store_root, f"{registry.address}/app/b:1")
    accept = "application/vnd.oci.image.manifest.v1+json"
    for repo in ("app/a", "app/b"):
        resp = httpx.head(f"{registry.url}/v2/{repo}/manifests/1", headers={"Accept": accept},
                          timeout=30)
        assert resp.status_code == 200 and resp.headers["docker-content-digest"] == expected


def test_pull_re_resolves_a_changed_base(seeded: Path, tmp_path: Path,
                                         registry: RegistryProcess,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    flags = ("--insecure-registry", registry.address)
    publisher = tmp_path / "publisher"
    shutil.copytree(seeded, publisher, symlinks=True)
    base = f"{registry.address}/base/bb:1"
    assert main(["--root", str(publisher), "tag", "busybox:latest", base]) == 0
    assert main(["--root", str(publisher), "push", "--progress=quiet", *flags, base]) == 0
    ctx = tmp_path / "consumer-ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nRUN echo RAN-one && cat /v > /seen || "
                                    "echo none > /seen\n")
    consumer = tmp_path / "consumer"
    build(consumer, ctx, capfd, "-t", "c:1", "--pull", *flags)
    assert ran(build(consumer, ctx, capfd, "-t", "c:1", "--pull", *flags)) == set()
    newer = tmp_path / "newer-ctx"
    newer.mkdir()
    (newer / "Dockerfile").write_text("FROM busybox\nRUN echo RAN-base && echo v2 > /v\n")
    build(publisher, newer, capfd, "-t", base, "--push", *flags)
    # without --pull the local base is used: nothing changed
    assert ran(build(consumer, ctx, capfd, "-t", "c:1", *flags)) == set()
    assert ran(build(consumer, ctx, capfd, "-t", "c:1", "--pull", *flags)) == {"RAN-one"}
    with image_tree(consumer, "c:1") as (tree, _):
        assert (tree / "seen").read_text() == "v2\n"


def test_add_of_a_url_never_takes_the_short_cut() -> None:
    from builder.buildkey import eligible
    from builder.options import BuildOptions

    def options(text: str, **args: str) -> BuildOptions:
        return BuildOptions(context=Path("."), dockerfile_text=text, build_args=args)

    assert eligible(options("FROM b\nHEALTHCHECK CMD wget -q http://127.0.0.1/\n"))
    assert not eligible(options("FROM b\nADD https://example.com/x /x\n"))
    assert not eligible(options("FROM b\nadd \\\n  https://example.com/x /x\n"))
    assert not eligible(options("FROM b\nARG U=https://example.com/x\nADD $U /x\n"))
    assert not eligible(options("FROM b\nADD $U /x\n", U="https://example.com/x"))
    assert not eligible(options("FROM b\nONBUILD ADD http://example.com/x /x\n"))
    assert not eligible(BuildOptions(context=Path("."), dockerfile_text="FROM b\n",
                                     no_cache=True))


def test_default_cache_limit_in_bytes_matches_its_text() -> None:
    from builder.commands.build import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_LIMIT
    from builder.commands.prune import parse_size

    assert parse_size(DEFAULT_CACHE_LIMIT) == DEFAULT_CACHE_BYTES


def test_prune_forgets_entries_of_removed_images(store_root: Path, ctx: Path,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd, "-t", "k:1")
    assert entries(store_root) == 1
    assert main(["--root", str(store_root), "rmi", "k:1"]) == 0
    assert main(["--root", str(store_root), "prune", "-f", "-a"]) == 0
    capfd.readouterr()
    assert entries(store_root) == 0
    assert ran(build(store_root, ctx, capfd, "-t", "k:1")) == {"RAN-two"}


def test_a_no_cache_build_is_what_later_builds_answer_with(
        store_root: Path, ctx: Path, capfd: pytest.CaptureFixture[str]) -> None:
    build(store_root, ctx, capfd, "-t", "k:old", "--compression", "zstd")
    build(store_root, ctx, capfd, "-t", "k:gzip")  # another key, same steps
    out = build(store_root, ctx, capfd, "-t", "k:fresh", "--no-cache")
    assert ran(out) == {"RAN-two"}
    assert entries(store_root) == 1  # the older entries named images the cache replaced
    out = build(store_root, ctx, capfd, "-t", "k:again", "--compression", "zstd")
    assert ran(out) == set()
    with BuildStore.open(store_root) as store:
        configs = {name: load_image(store.content, store.images.get(name).target).config.digest
                   for name in ("k:old", "k:fresh", "k:again")}
    assert configs["k:again"] == configs["k:fresh"] != configs["k:old"]
