"""A CI pipeline with real registries: runners with empty stores share work through a
registry cache; pushes to our registry (TLS + token auth) and to CNCF distribution (TLS +
basic auth); a base image from a docker.io mirror."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.cli import main
from builder.store import BuildStore
from registry.testing.processes import RegistryProcess, ours
from tests.builder.test_build import image_tree
from tests.registry.client.test_distribution import PASSWORD, USER, start_distribution
from tests.registry.client.test_login import trust
from tests.registry.test_auth_server import PASSWORDS, AuthServer, start_auth_server


def pybuild(root: Path, *args: str, stdin: str | None = None,
            monkeypatch: pytest.MonkeyPatch | None = None) -> int:
    if stdin is not None and monkeypatch is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["--root", str(root), *args])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    srv = start_auth_server(tmp_path_factory.mktemp("pipeline-registry"))
    yield srv
    srv.stop()


@pytest.fixture
def logged_in(server: AuthServer, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DOCKER_CONFIG in tmp, the CA trusted in /etc/docker/certs.d, root logged in."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    with trust(server.address, server.root / "tls" / "ca.crt"):
        assert pybuild(tmp_path / "login-store", "login", "-u", "root", "--password-stdin",
                       server.address, stdin=PASSWORDS["root"] + "\n",
                       monkeypatch=monkeypatch) == 0
        yield server.address


@pytest.fixture
def base_ref(logged_in: str, seeded: Path, tmp_path: Path) -> str:
    """busybox pushed into the registry as base/busybox:1."""
    root = tmp_path / "publisher"
    shutil.copytree(seeded, root, symlinks=True)
    ref = f"{logged_in}/base/busybox:1"
    assert pybuild(root, "tag", "busybox:latest", ref) == 0
    assert pybuild(root, "push", "--progress=plain", ref) == 0
    return ref


def _context(tmp_path: Path, base: str) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src/main.txt").write_text("main\n")
    (ctx / "Dockerfile").write_text(
        f"FROM {base} AS build\n"
        "RUN echo RAN-deps && echo deps > /deps\n"
        "COPY src/ /src/\n"
        "RUN echo RAN-compile && cat /deps /src/main.txt > /out\n"
        f"FROM {base}\n"
        "COPY --from=build /out /app/out\n"
        "RUN echo RAN-final && wc -l /app/out > /app/lines\n"
        "CMD [\"cat\", \"/app/out\"]\n")
    return ctx


def _ran(output: str) -> set[str]:
    return {m for m in ("RAN-deps", "RAN-compile", "RAN-final") if f" {m}\n" in output}


def _build(root: Path, ctx: Path, capfd: pytest.CaptureFixture[str], *args: str) -> str:
    rc = pybuild(root, "build", "--progress=plain", *args, str(ctx))
    out, err = capfd.readouterr()
    assert rc == 0, out + err
    return out + err


def _manifest(root: Path, name: str) -> str:
    with BuildStore.open(root) as store:
        return str(store.images.get(name).target.digest)


def test_ci_runners_share_the_registry_cache(base_ref: str, logged_in: str, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, base_ref)
    app = f"{logged_in}/team/app:1"
    cache = f"type=registry,ref={logged_in}/team/app:buildcache"
    runner_a = tmp_path / "runner-a"
    out = _build(runner_a, ctx, capfd, "-t", app, "--push", "--cache-to", cache + ",mode=max")
    assert _ran(out) == {"RAN-deps", "RAN-compile", "RAN-final"}
    pushed = _manifest(runner_a, app)

    runner_b = tmp_path / "runner-b"  # an empty store
    out = _build(runner_b, ctx, capfd, "-t", app, "--cache-from", cache)
    assert _ran(out) == set(), out
    assert _manifest(runner_b, app) == pushed
    with BuildStore.open(runner_b) as store:
        stored = {str(i.digest) for i in store.content.walk()}
    with BuildStore.open(runner_a) as store:
        deps_layers = {str(i.digest) for i in store.content.walk()} - stored
    assert deps_layers, "runner B should not have pulled the build stage's own layers"

    (ctx / "src/main.txt").write_text("main, changed\n")
    runner_c = tmp_path / "runner-c"
    out = _build(runner_c, ctx, capfd, "-t", app, "--cache-from", cache)
    assert _ran(out) == {"RAN-compile", "RAN-final"}
    with image_tree(runner_c, app) as (tree, _):
        assert (tree / "app/out").read_text() == "deps\nmain, changed\n"

    runner_d = tmp_path / "runner-d"
    assert pybuild(runner_d, "pull", "--progress=quiet", app) == 0
    assert _manifest(runner_d, app) == pushed


def test_push_and_pull_with_distribution_basic_auth(seeded: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    proc, tls = start_distribution(tmp_path / "dist")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    try:
        with trust(proc.address, tls.ca):
            assert pybuild(tmp_path / "s0", "login", "-u", USER, "--password-stdin",
                           proc.address, stdin=PASSWORD + "\n", monkeypatch=monkeypatch) == 0
            root = tmp_path / "builder"
            shutil.copytree(seeded, root, symlinks=True)
            ctx = tmp_path / "ctx"
            ctx.mkdir()
            (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo hello > /hello\n")
            ref = f"{proc.address}/team/hello:1"
            _build(root, ctx, capfd, "-t", ref, "--push")
            fresh = tmp_path / "fresh"
            assert pybuild(fresh, "pull", "--progress=quiet", ref) == 0
            assert _manifest(fresh, ref) == _manifest(root, ref)
            with image_tree(fresh, ref) as (tree, _):
                assert (tree / "hello").read_text() == "hello\n"
    finally:
        proc.stop()


def test_base_image_from_a_docker_io_mirror(seeded: Path, tmp_path: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    mirror: RegistryProcess = ours(tmp_path / "mirror").start()
    try:
        publisher = tmp_path / "publisher"
        shutil.copytree(seeded, publisher, symlinks=True)
        ref = f"{mirror.address}/library/busybox:latest"
        assert pybuild(publisher, "tag", "busybox:latest", ref) == 0
        assert pybuild(publisher, "push", "--progress=quiet", "--insecure-registry",
                       mirror.address, ref) == 0
        config = tmp_path / "daemon.json"
        config.write_text(json.dumps({"registry-mirrors": [mirror.url],
                                      "insecure-registries": [mirror.address]}))
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo from-mirror > /m\n")
        empty = tmp_path / "empty"
        out = _build(empty, ctx, capfd, "-t", "m:1", "--registry-config", str(config))
        assert "pull docker.io/library/busybox:latest" in out
        with image_tree(empty, "m:1") as (tree, _):
            assert (tree / "m").read_text() == "from-mirror\n"
        with BuildStore.open(empty) as store:
            assert "busybox:latest" in {r.name for r in store.images.list()}
    finally:
        mirror.stop()


@pytest.mark.parametrize(("args", "message"), [
    (("--cache-from", "type=registry,ref=127.0.0.1:1/x:cache"), "cannot reach registry"),
])
def test_registry_errors_are_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                      args: tuple[str, ...], message: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    assert pybuild(tmp_path / "s", "build", *args, str(ctx)) == 1
    err = capfd.readouterr().err
    assert message in err and "Traceback" not in err


def test_inline_cache_travels_with_the_image(base_ref: str, logged_in: str, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    ctx = _context(tmp_path, base_ref)
    app = f"{logged_in}/team/inline:1"
    _build(tmp_path / "a", ctx, capfd, "-t", app, "--push", "--cache-to", "type=inline")
    with BuildStore.open(tmp_path / "a") as store:
        from layerstore.assembly import load_image

        config = load_image(store.content, store.images.get(app).target).image
        assert "pybuild.buildcache.v1" in config.extra
    out = _build(tmp_path / "b", ctx, capfd, "-t", app, "--cache-from",
                 f"type=registry,ref={app}")
    # mode=min: the final stage's steps come from the image; the build stage runs again
    assert "RAN-final" not in _ran(out) and "RAN-compile" in _ran(out)
