"""The local Docker engine as an image store: ``FROM`` and ``COPY --from`` an image only the
engine has, ``--load`` / ``--output type=docker`` into it, and the errors without one. Run
against the real engine (every image made here is named ``dockerstore-…`` and removed)."""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.cli import main
from builder.dockerengine import (
    DockerEngine,
    DockerEngineError,
    EngineAddress,
    NoDockerEngine,
    NotInDockerEngine,
    engine_address,
    load_report,
)
from builder.dockerimages import chains_in_engine, load_image_into_engine
from builder.dockerstream import archive_chunks, read_stream
from builder.errors import BuildError
from builder.store import BuildStore, unpack_layers, view_of
from layerstore.assembly import load_image
from layerstore.content.local import LocalStore
from layerstore.digest import chain_ids
from layerstore.docker_archive import ArchiveImage
from layerstore.errors import InvalidArgument, NotFound
from layerstore.oci import Manifest
from layerstore.walk import load_manifest
from tests.peers import DOCKER, Dockerd, docker


@dataclass(frozen=True)
class DockerImages:
    """Images made in docker for this module: a base imported from a busybox rootfs and a
    three-layer image docker built on it (it adds /added and /etc/marker, deletes /bin/ls)."""

    base: str
    layered: str
    layered_id: str
    created: list[str]

    def name(self, what: str) -> str:
        """A fresh docker image name, removed from the engine after the module."""
        name = f"dockerstore-{what}-{uuid.uuid4().hex[:10]}:1"
        self.created.append(name)
        return name


def _unique_rootfs(rootfs: Path) -> bytes:
    """``rootfs`` as a tar with a file of its own added: the layer is this module's alone,
    so no image that other tests make and remove on the same engine shares it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        tar.add(rootfs, arcname=".")
        mark = uuid.uuid4().hex.encode()
        info = tarfile.TarInfo("etc/dockerstore-id")
        info.size = len(mark)
        tar.addfile(info, io.BytesIO(mark))
    return out.getvalue()


@pytest.fixture(scope="module")
def docker_images(dockerd: Dockerd, busybox_rootfs: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerImages]:
    created: list[str] = []
    images = DockerImages("", "", "", created)
    try:
        base = images.name("base")
        docker("import", "-c", 'CMD ["sh"]', "-", base, input=_unique_rootfs(busybox_rootfs))
        ctx = tmp_path_factory.mktemp("docker-ctx")
        (ctx / "Dockerfile").write_text(
            f"FROM {base}\n"
            "RUN echo added > /added && rm /bin/ls\n"
            "RUN mkdir -p /etc && echo marker > /etc/marker\n"
            "ENV FROM_DOCKER=yes\n")
        layered = images.name("layered")
        docker("build", "-q", "--network", "none", "-t", layered, str(ctx))
        layered_id = json.loads(docker("image", "inspect", layered).stdout)[0]["Id"]
        yield DockerImages(base, layered, layered_id, created)
    finally:
        docker("rmi", "-f", *created, check=False)


def build(root: Path, context: Path, dockerfile: str, *args: str) -> int:
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    return main(["--root", str(root), "build", "--progress=plain", *args, str(context)])


@contextmanager
def image_file(root: Path, name: str, path: str) -> Iterator[str]:
    """The text of file ``path`` in image ``name`` of the store at ``root``."""
    with BuildStore.open(root) as store:
        stored = load_image(store.content, store.images.get(name).target)
        manifest = load_manifest(store.content, stored.manifest)
        assert isinstance(manifest, Manifest)
        chain = unpack_layers(store, manifest.layers, stored.image.rootfs.diff_ids)
        with view_of(store, chain) as tree:
            yield (tree / path).read_text()


def docker_run(name: str, *command: str) -> str:
    return docker("run", "--rm", "--network", "none", name, *command).stdout.decode()


def test_from_an_image_only_docker_has(docker_images: DockerImages, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    out = docker_images.name("from")
    rc = build(root, tmp_path / "ctx",
               f"FROM {docker_images.layered}\n"
               "RUN test \"$FROM_DOCKER\" = yes && test ! -e /bin/ls && cat /added /etc/marker"
               " > /seen\n"
               'CMD ["cat", "/seen"]\n', "-t", out, "--load")
    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"loaded {docker_images.layered} from the Docker engine" in err
    assert f"loaded into the Docker engine: {out}" in err
    with BuildStore.open(root) as store:
        base = load_image(store.content, store.images.get(docker_images.layered).target)
        built = load_image(store.content, store.images.get(out).target)
    assert str(base.config.digest) == docker_images.layered_id
    assert len(base.image.rootfs.diff_ids) == 3
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}").stdout.decode()
    assert f"{out} {built.config.digest.hex[:12]}" in listed.splitlines()
    assert docker_run(out) == "added\nmarker\n"


def test_copy_from_an_image_only_docker_has(docker_images: DockerImages,
                                            tmp_path: Path) -> None:
    root = tmp_path / "store"
    out = docker_images.name("copy")
    rc = build(root, tmp_path / "ctx",
               f"FROM {docker_images.base}\n"
               f"COPY --from={docker_images.layered} /added /etc/marker /copied/\n"
               'CMD ["cat", "/copied/added", "/copied/marker"]\n',
               "-t", out, "-o", "type=docker")
    assert rc == 0
    assert docker_run(out) == "added\nmarker\n"


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_load_gives_docker_the_same_image(docker_images: DockerImages, tmp_path: Path,
                                          compression: str) -> None:
    root = tmp_path / "store"
    first, second = docker_images.name("load"), docker_images.name("load")
    rc = build(root, tmp_path / "ctx",
               f"FROM {docker_images.base}\n"
               "RUN echo one > /one\n"
               "RUN rm /one && echo two > /two\n"
               "USER nobody\nWORKDIR /tmp\n"
               'CMD ["sh", "-c", "cat /two; id -u; pwd; test ! -e /one"]\n',
               "-t", first, "-t", second, "--load", "--compression", compression)
    assert rc == 0
    with BuildStore.open(root) as store:
        ours = load_image(store.content, store.images.get(first).target)
    for name in (first, second):
        inspect = json.loads(docker("image", "inspect", name).stdout)[0]
        assert inspect["Id"] == str(ours.config.digest)
        assert inspect["RootFS"]["Layers"] == [str(d) for d in ours.image.rootfs.diff_ids]
    assert docker_run(first) == "two\n65534\n/tmp\n"


def test_loaded_image_comes_back_unchanged(docker_images: DockerImages,
                                           tmp_path: Path) -> None:
    """pybuild → docker → a fresh pybuild store: the same image ID and layers."""
    made = docker_images.name("roundtrip")
    assert build(tmp_path / "a", tmp_path / "ctx", f"FROM {docker_images.layered}\n"
                 "RUN echo x > /x\n", "-t", made, "--load") == 0
    assert build(tmp_path / "b", tmp_path / "ctx2", f"FROM {made}\nRUN cat /x\n") == 0
    with BuildStore.open(tmp_path / "a") as a, BuildStore.open(tmp_path / "b") as b:
        there = load_image(a.content, a.images.get(made).target)
        back = load_image(b.content, b.images.get(made).target)
    assert back.config.digest == there.config.digest
    assert back.image.rootfs.diff_ids == there.image.rootfs.diff_ids


def test_read_stream_takes_docker_save_from_a_pipe(docker_images: DockerImages,
                                                   tmp_path: Path) -> None:
    """One forward pass over a pipe (no seeking): ``docker save`` piped in."""
    save = subprocess.Popen([DOCKER, "save", docker_images.layered], stdout=subprocess.PIPE)
    assert save.stdout is not None
    store = LocalStore(tmp_path / "content")
    images = read_stream(save.stdout, store, "docker save")
    assert save.wait(timeout=120) == 0
    assert [str(i.image.config.digest) for i in images] == [docker_images.layered_id]
    assert images[0].tags == (docker_images.layered,)


def test_engine_client_reports_a_missing_image(docker_images: DockerImages) -> None:
    with DockerEngine() as engine:
        engine.ping()
        assert engine.inspect(docker_images.base).id.startswith("sha256:")
        with pytest.raises(NotInDockerEngine, match="has no image 'dockerstore-none"):
            engine.inspect("dockerstore-none-here:1")


def test_image_in_neither_place_is_one_line_at_its_from(docker_images: DockerImages,
                                                        tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    absent = f"dockerstore-absent-{uuid.uuid4().hex[:8]}:1"
    assert build(tmp_path / "store", tmp_path / "ctx", f"FROM {absent}\nRUN true\n") == 1
    err = [line for line in capsys.readouterr().err.splitlines()
           if line.startswith("error:")]
    assert len(err) == 1
    assert err[0].startswith("error: Dockerfile:1: FROM ")
    assert f"has no image '{absent}'" in err[0]
    assert "/var/run/docker.sock" in err[0]


def test_no_engine_is_named_by_its_socket(docker_images: DockerImages, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    root = tmp_path / "store"
    assert build(root, tmp_path / "ctx", f"FROM {docker_images.base}\n") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: Dockerfile:1: FROM ")
    assert f"no Docker engine at unix://{missing} (DOCKER_HOST)" in err[-1]
    assert "the socket does not exist" in err[-1]
    assert build(root, tmp_path / "ctx", "FROM scratch\nCOPY Dockerfile /\n",
                 "--load", "-t", "dockerstore-never:1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no Docker engine at unix://{missing} (DOCKER_HOST): the socket "
                   "does not exist"]
    with BuildStore.open(root) as store:
        assert [r.name for r in store.images.list()] == []


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--load", "--platform", "linux/amd64,linux/arm64"], None,
     "error: --load: cannot load a multi-platform image into docker (--platform "
     "linux/amd64,linux/arm64)"),
    (["-o", "type=docker", "--platform", "linux/amd64,linux/arm64"], None,
     "error: --output type=docker: a docker archive holds one platform, but --platform "
     "names 2"),
    (["--load"], "tcp://127.0.0.1:2375",
     "error: DOCKER_HOST=tcp://127.0.0.1:2375: pybuild reaches the Docker engine through a "
     "unix:// socket only"),
])
def test_bad_load_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str], args: list[str],
                           env: str | None, message: str) -> None:
    if env is not None:
        monkeypatch.setenv("DOCKER_HOST", env)
    assert build(tmp_path / "store", tmp_path / "ctx", "FROM scratch\n", *args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_a_stream_that_breaks_off_is_refused(tmp_path: Path) -> None:
    """A stream cut inside a layer is an error naming its source; nothing is named."""
    info = tarfile.TarInfo("abc/layer.tar")
    info.size = 4096
    cut = info.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1000
    store = LocalStore(tmp_path / "content")
    with pytest.raises(InvalidArgument, match=r"^engine stream: the archive is damaged"):
        read_stream(io.BytesIO(cut), store, "engine stream")
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as tar:
        tar.addfile(info, io.BytesIO(b"\0" * 4096))
    whole.seek(0)
    with pytest.raises(NotFound, match=r"^engine stream: the archive has no manifest\.json"):
        read_stream(whole, store, "engine stream")


def test_a_missing_blob_stops_the_load_and_docker_keeps_nothing(tmp_path: Path,
                                                                dockerd: Dockerd) -> None:
    root = tmp_path / "store"
    name = f"dockerstore-broken-{uuid.uuid4().hex[:10]}:1"
    assert build(root, tmp_path / "ctx", "FROM scratch\nCOPY Dockerfile /\n", "-t", name) == 0
    with BuildStore.open(root) as store:
        image = load_image(store.content, store.images.get(name).target)
        manifest = load_manifest(store.content, image.manifest)
        assert isinstance(manifest, Manifest)
        store.content.delete(manifest.layers[0].digest)
        with pytest.raises(BuildError, match=r"^loading into the Docker engine at "
                           r"/var/run/docker\.sock: .*" + manifest.layers[0].digest.hex):
            load_image_into_engine(store, image, [name])
    assert docker("image", "inspect", name, check=False).returncode != 0


def test_a_socket_nobody_listens_on_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dead))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{dead}")
    assert build(tmp_path / "store", tmp_path / "ctx", "FROM scratch\n", "--load") == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: cannot reach the Docker engine at unix://{dead} (DOCKER_HOST): "
        "connection refused"]


@pytest.mark.unit
@pytest.mark.parametrize(("value", "socket_path", "where"), [
    (None, "/var/run/docker.sock", "/var/run/docker.sock"),
    ("", "/var/run/docker.sock", "/var/run/docker.sock"),
    ("unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock",
     "unix:///run/user/1000/docker.sock (DOCKER_HOST)"),
])
def test_engine_address(monkeypatch: pytest.MonkeyPatch, value: str | None, socket_path: str,
                        where: str) -> None:
    if value is None:
        monkeypatch.delenv("DOCKER_HOST", raising=False)
    else:
        monkeypatch.setenv("DOCKER_HOST", value)
    assert engine_address() == EngineAddress(socket_path, where)


@pytest.mark.unit
@pytest.mark.parametrize("value", ["tcp://127.0.0.1:2375", "ssh://host", "unix://"])
def test_engine_address_refuses_what_is_not_a_socket(monkeypatch: pytest.MonkeyPatch,
                                                     value: str) -> None:
    monkeypatch.setenv("DOCKER_HOST", value)
    expected = "^" + re.escape(f"DOCKER_HOST={value}: pybuild reaches")
    with pytest.raises(NoDockerEngine, match=expected):
        engine_address()


@pytest.mark.unit
def test_an_error_in_theload_report_is_raised() -> None:
    ok = '{"stream":"Loaded image: app:1\\n"}\r\n{"stream":"Loaded image ID: sha256:ab\\n"}\r\n'
    assert load_report(ok, "sock") == ["Loaded image: app:1", "Loaded image ID: sha256:ab"]
    bad = '{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}\r\n'
    with pytest.raises(DockerEngineError, match=r"^Docker engine at sock: load: unexpected EOF$"):
        load_report(bad, "sock")


def test_what_load_sends_reads_back(tmp_path: Path) -> None:
    """The archive ``--load`` streams (``blobs/sha256/…`` entries, gzip and zstd layers as
    stored or inflated) is what newer engines save too: read back, it is the same image."""
    root = tmp_path / "store"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a").write_text("a\n")
    assert build(root, ctx, "FROM scratch\nCOPY a /a\nCOPY Dockerfile /b\n", "-t", "sent:1",
                 "--compression", "zstd") == 0
    with BuildStore.open(root) as store:
        image = load_image(store.content, store.images.get("sent:1").target)
        data = b"".join(archive_chunks(store.content, [ArchiveImage(image, ("sent:1",))]))
    assert len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert names[-2:] == ["manifest.json", "repositories"]
    assert all(n.startswith("blobs/sha256/") for n in names[:-2])
    back = read_stream(io.BytesIO(data), LocalStore(tmp_path / "content"), "sent")
    assert [(b.image.config.digest, b.tags) for b in back] == [(image.config.digest,
                                                                ("sent:1",))]
    assert back[0].image.image.rootfs.diff_ids == image.image.rootfs.diff_ids


def test_load_leaves_out_the_layers_docker_has(docker_images: DockerImages,
                                               tmp_path: Path) -> None:
    """On a layer-store engine, the base image's layers are not sent again; a layer the
    engine lacks left out makes it refuse the archive, which --load then sends whole."""
    root = tmp_path / "store"
    made = docker_images.name("thin")
    assert build(root, tmp_path / "ctx", f"FROM {docker_images.layered}\n"
                 "RUN echo thin > /thin\n", "-t", made) == 0
    with BuildStore.open(root) as store, DockerEngine() as engine:
        image = load_image(store.content, store.images.get(made).target)
        base = load_image(store.content, store.images.get(docker_images.layered).target)
        present = chains_in_engine(engine, store)
        assert engine.stores_layers_by_chain()
        assert set(chain_ids(base.image.rootfs.diff_ids)) <= present
        assert chain_ids(image.image.rootfs.diff_ids)[-1] not in present
        archive = [ArchiveImage(image, (made,))]
        thin = b"".join(archive_chunks(store.content, archive, present))
        with tarfile.open(fileobj=io.BytesIO(thin)) as tar:
            layers = [n for n in tar.getnames() if n.startswith("blobs/")]
        assert len(layers) == 2  # the config and the one new layer
        with pytest.raises(DockerEngineError, match=r"^Docker engine at /var/run/docker\.sock: "
                           "load: "):
            engine.load(archive_chunks(store.content, archive,
                                       frozenset(chain_ids(image.image.rootfs.diff_ids))))
        assert docker("image", "inspect", made, check=False).returncode != 0
        assert engine.load(iter([thin])) == [f"Loaded image: {made}"]
    assert docker_run(made, "cat", "/thin", "/added") == "thin\nadded\n"


def test_build_context_docker_image_only_docker_has(docker_images: DockerImages,
                                                    tmp_path: Path) -> None:
    root = tmp_path / "store"
    assert build(root, tmp_path / "ctx", "FROM base\nRUN cat /added > /via-context\n",
                 "-t", "via-context:1",
                 "--build-context", f"base=docker-image://{docker_images.layered}") == 0
    with image_file(root, "via-context:1", "via-context") as text:
        assert text == "added\n"


def test_an_image_of_another_platform_is_not_taken(docker_images: DockerImages,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert build(tmp_path / "store", tmp_path / "ctx",
                 f"FROM {docker_images.base}\nCOPY Dockerfile /\n",
                 "--platform", "linux/arm64") == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and err[0].startswith(f"error: Dockerfile:1: FROM {docker_images.base}")
    assert err[0].endswith(f"the Docker engine at /var/run/docker.sock holds "
                           f"'{docker_images.base}' for linux/amd64, not for linux/arm64")


def test_pull_reads_the_engine_image_again(docker_images: DockerImages,
                                           tmp_path: Path) -> None:
    """The copy taken from the engine serves later builds; --pull takes the engine's image
    again when the name has moved there."""
    root = tmp_path / "store"
    moving = docker_images.name("moving")
    docker("tag", docker_images.base, moving)
    dockerfile = f"FROM {moving}\nRUN (cat /added 2>/dev/null || echo none) > /seen\n"
    assert build(root, tmp_path / "ctx", dockerfile, "-t", "seen:1") == 0
    with image_file(root, "seen:1", "seen") as text:
        assert text == "none\n"
    docker("tag", docker_images.layered, moving)
    assert build(root, tmp_path / "ctx", dockerfile, "-t", "seen:2") == 0
    with image_file(root, "seen:2", "seen") as text:
        assert text == "none\n"
    assert build(root, tmp_path / "ctx", dockerfile, "-t", "seen:3", "--pull") == 0
    with image_file(root, "seen:3", "seen") as text:
        assert text == "added\n"
