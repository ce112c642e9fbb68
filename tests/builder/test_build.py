"""End-to-end builds through ``pybuild build`` on a busybox base: instructions, stages,
errors, reproducibility, and what is left behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from builder.cli import main
from builder.store import BuildStore, unpack_layers, view_of
from layerstore.assembly import StoredImage, load_image
from layerstore.oci import Manifest
from layerstore.snapshots.mount import mountinfo
from layerstore.walk import load_manifest


def build(root: Path, context: Path, dockerfile: str, *args: str) -> int:
    (context / "Dockerfile").write_text(dockerfile)
    return main(["--root", str(root), "build", "--progress=plain", *args, str(context)])


def ours(*roots: Path) -> set[str]:
    """Mount points below ``roots``: where a build whose temporary directory and store lie
    there could have mounted views, snapshots and sandboxes."""
    prefixes = tuple(f"{r}/" for r in roots)
    return {m.mount_point for m in mountinfo() if m.mount_point.startswith(prefixes)}


@contextmanager
def image_tree(root: Path, name: str) -> Iterator[tuple[Path, StoredImage]]:
    with BuildStore.open(root) as store:
        stored = load_image(store.content, store.images.get(name).target)
        manifest = load_manifest(store.content, stored.manifest)
        assert isinstance(manifest, Manifest)
        chain = unpack_layers(store, manifest.layers, stored.image.rootfs.diff_ids)
        with view_of(store, chain) as tree:
            yield tree, stored


def test_run_env_workdir_and_config(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    rc = build(store_root, ctx, (
        "FROM busybox\n"
        "ARG GREETING=hello\n"
        "ENV APP_HOME=/srv/app PATH=/srv/app/bin:$PATH\n"
        "WORKDIR $APP_HOME\n"
        "RUN echo \"$GREETING from $(pwd)\" > out.txt && echo $PATH > path.txt\n"
        "LABEL org.example.name=\"my app\" version=1\n"
        "EXPOSE 80 8000-8001/udp\n"
        "VOLUME /data\n"
        "USER 1000:1000\n"
        "STOPSIGNAL SIGTERM\n"
        "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost\n"
        "ENTRYPOINT [\"/bin/sh\", \"-c\"]\n"
        "CMD [\"echo hi\"]\n"), "-t", "app:v1", "--build-arg", "GREETING=hi")
    assert rc == 0
    with image_tree(store_root, "app:v1") as (tree, stored):
        assert (tree / "srv/app/out.txt").read_text() == "hi from /srv/app\n"
        assert (tree / "srv/app/path.txt").read_text().startswith("/srv/app/bin:/usr/local")
        config = stored.image.config
        assert config is not None
        assert config.working_dir == "/srv/app"
        assert config.env is not None and "APP_HOME=/srv/app" in config.env
        assert config.labels == {"org.example.name": "my app", "version": "1"}
        assert config.exposed_ports == {"80/tcp": {}, "8000/udp": {}, "8001/udp": {}}
        assert config.volumes == {"/data": {}}
        assert config.user == "1000:1000"
        assert config.stop_signal == "SIGTERM"
        assert config.healthcheck is not None
        assert config.healthcheck.test == ("CMD-SHELL", "wget -q localhost")
        assert config.healthcheck.interval == 5 * 10**9 and config.healthcheck.retries == 2
        assert config.entrypoint == ("/bin/sh", "-c") and config.cmd == ("echo hi",)
        history = stored.image.history or ()
        runs = [h for h in history if (h.created_by or "").startswith("RUN")]
        assert runs and runs[0].created_by.startswith("RUN |1 GREETING=hi /bin/sh -c echo")
        assert runs[0].empty_layer is None
        labels = [h for h in history if (h.created_by or "").startswith("LABEL")]
        assert labels[0].empty_layer is True
        made = sum(1 for h in history if not h.empty_layer)
        assert made == len(stored.image.rootfs.diff_ids)


def test_entrypoint_resets_inherited_cmd_and_shell_forms(store_root: Path,
                                                         tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\nSHELL [\"/bin/sh\", \"-ec\"]\n"
                 "ENTRYPOINT top -b\n", "-t", "e:1") == 0
    with image_tree(store_root, "e:1") as (_, stored):
        config = stored.image.config
        assert config is not None
        assert config.entrypoint == ("/bin/sh", "-ec", "top -b")
        assert config.cmd is None and config.shell == ("/bin/sh", "-ec")


def test_multistage_copy_from_and_scratch(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "src/main.txt").write_text("source\n")
    (ctx / "ignored.log").write_text("no\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    rc = build(store_root, ctx, (
        "FROM busybox AS build\n"
        "COPY src/ /work/\n"
        "RUN cat /work/main.txt /work/main.txt > /work/double.txt && mkdir /out && "
        "cp /work/double.txt /out/ && ln -s double.txt /out/link\n"
        "FROM busybox AS unused\n"
        "RUN exit 1\n"
        "FROM scratch\n"
        "COPY --from=build /out /\n"
        "COPY --from=busybox /bin/busybox /bin/busybox\n"
        "CMD [\"/bin/busybox\", \"cat\", \"/double.txt\"]\n"), "-t", "multi:1")
    assert rc == 0
    with image_tree(store_root, "multi:1") as (tree, stored):
        assert (tree / "double.txt").read_text() == "source\nsource\n"
        assert (tree / "link").is_symlink()
        assert (tree / "bin/busybox").stat().st_size > 100_000
        assert not (tree / "work").exists()
        assert stored.image.config is not None
        assert stored.image.config.env == (
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)


def test_stages_run_in_parallel(store_root: Path, tmp_path: Path) -> None:
    """Each stage waits (bounded) for the other's mark in a shared cache mount: sequential
    stages could not both finish."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()

    def stage(me: str, other: str) -> str:
        return (f"FROM busybox AS {me}\n"
                "RUN --mount=type=cache,id=sync,target=/sync "
                f"touch /sync/{me} && i=0 && while [ ! -e /sync/{other} ] && [ $i -lt 300 ]; "
                f"do sleep 0.1; i=$((i+1)); done && test -e /sync/{other} && echo ok > /{me}\n")

    rc = build(store_root, ctx, stage("a", "b") + stage("b", "a") + (
        "FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n"), "-t", "par:1")
    assert rc == 0
    with image_tree(store_root, "par:1") as (tree, _):
        assert (tree / "a").read_text() == (tree / "b").read_text() == "ok\n"


def test_heredocs(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    rc = build(store_root, ctx, (
        "FROM busybox\n"
        "ARG NAME=world\n"
        "RUN <<EOF\n"
        "echo one > /one\n"
        "echo two >> /one\n"
        "EOF\n"
        "RUN <<A cat > /two && cat <<'B' >> /two\n"
        "first $NAME\n"
        "A\n"
        "second $NAME\n"
        "B\n"
        "COPY <<EOF /etc/greeting\n"
        "hello $NAME\n"
        "EOF\n"
        "RUN <<EOF\n"
        "#!/bin/sh\n"
        "echo from-script > /three\n"
        "EOF\n"), "-t", "here:1")
    assert rc == 0
    with image_tree(store_root, "here:1") as (tree, _):
        assert (tree / "one").read_text() == "one\ntwo\n"
        assert (tree / "two").read_text() == "first world\nsecond $NAME\n"
        assert (tree / "etc/greeting").read_text() == "hello world\n"
        assert (tree / "three").read_text() == "from-script\n"


def test_onbuild_triggers_run_in_the_child(store_root: Path, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app\n")
    assert build(store_root, ctx, "FROM busybox\nONBUILD COPY app.txt /app/\n"
                 "ONBUILD RUN cp /app/app.txt /app/copied\n", "-t", "parent:1") == 0
    with image_tree(store_root, "parent:1") as (tree, stored):
        assert not (tree / "app").exists()
        assert stored.image.config is not None
        assert stored.image.config.on_build == ("COPY app.txt /app/",
                                                "RUN cp /app/app.txt /app/copied")
    assert build(store_root, ctx, "FROM parent:1\n", "-t", "child:1") == 0
    with image_tree(store_root, "child:1") as (tree, stored):
        assert (tree / "app/copied").read_text() == "app\n"
        assert stored.image.config is not None and not stored.image.config.on_build


def test_source_date_epoch_gives_identical_manifests(tmp_path: Path, seeded: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("data\n")
    dockerfile = ("FROM busybox\nCOPY f /f\nRUN echo built > /built && mkdir -p /var/x\n"
                  "ENV A=1\nCMD [\"cat\", \"/built\"]\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    digests = []
    for n in range(2):
        root = tmp_path / f"store{n}"
        shutil.copytree(seeded, root, symlinks=True)
        assert build(root, ctx, dockerfile, "-t", "repro:1") == 0
        with BuildStore.open(root) as store:
            digests.append(store.images.get("repro:1").target.digest)
    assert digests[0] == digests[1]


@pytest.mark.parametrize(("dockerfile", "expect"), [
    ("FROM busybox\nFROBNICATE x\n", "Dockerfile:2: unknown instruction: FROBNICATE"),
    ("FROM busybox\nCOPY --frm=x a b\n", "Dockerfile:2:"),
    ("FROM busybox\nCOPY nosuch.txt /x\n", "Dockerfile:2:"),
    ("FROM busybox\nCOPY --from=nostage /a /b\n", "Dockerfile:2: --from=nostage: no stage "
     "or image named 'nostage'"),
    ("FROM nosuchimage:1\n", "Dockerfile:1: FROM nosuchimage:1: cannot reach registry "
     "docker.io"),
    ("FROM busybox\nCMD [\"unterminated\n", None),
    ("FROM busybox\nRUN --mount=type=nope,target=/x true\n", "Dockerfile:2:"),
    ("FROM busybox AS a\nFROM busybox\nCOPY --from=a\n", "Dockerfile:3:"),
])
def test_bad_input_names_the_line(store_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str], dockerfile: str,
                                  expect: str | None) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a")
    rc = build(store_root, ctx, dockerfile, "-t", "bad:1")
    err = capsys.readouterr().err
    if expect is None:
        assert rc == 0  # a JSON-looking CMD that is not valid JSON is the shell form
        return
    assert rc == 1
    assert expect in err, err
    assert "Traceback" not in err
    with BuildStore.open(store_root) as store:
        assert [r.name for r in store.images.list()] == ["busybox:latest"]


def test_failing_run_reports_exit_code_and_output_and_cleans_up(
        store_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    before = ours(tmp_path)
    rc = build(store_root, ctx, "FROM busybox\nRUN echo ok > /ok\n"
               "RUN echo compiling; echo 'error: it broke' >&2; exit 3\n", "-t", "fail:1")
    err = capsys.readouterr().err
    assert rc == 1
    assert "Dockerfile:3:" in err and "exit code 3" in err and "error: it broke" in err
    assert ours(tmp_path) == before
    with BuildStore.open(store_root) as store:
        assert [r.name for r in store.images.list()] == ["busybox:latest"]
        kinds = {info.kind.value for info in store.snapshots.walk()}
        assert kinds <= {"committed"}
        assert not list((store.tmp).iterdir())


def test_unknown_build_arg_warns(store_root: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\n", "--build-arg", "NOPE=1", "-t", "w:1") == 0
    assert "NOPE" in capsys.readouterr().err


def test_stdin_dockerfile_and_iidfile(store_root: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    monkeypatch.setattr("sys.stdin", io.StringIO("FROM busybox\nRUN touch /x\n"))
    iid = tmp_path / "iid"
    assert main(["--root", str(store_root), "build", "-q", "-f", "-", "--iidfile", str(iid),
                 "-t", "stdin:1", str(ctx)]) == 0
    with BuildStore.open(store_root) as store:
        stored = load_image(store.content, store.images.get("stdin:1").target)
    assert iid.read_text() == str(stored.config.digest)
    assert json.loads(stored.image.to_json())["config"]["Env"]


def test_outputs_and_metadata_file(store_root: Path, tmp_path: Path) -> None:
    import tarfile

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("payload\n")
    out = tmp_path / "out"
    rc = build(store_root, ctx, "FROM busybox\nCOPY f /srv/f\nRUN chmod 640 /srv/f\n",
               "-t", "outs:1", "--output", f"type=local,dest={out}/local",
               "-o", f"type=oci,dest={out}/oci.tar", "-o", f"type=docker,dest={out}/d.tar",
               "-o", f"type=tar,dest={out}/fs.tar", "--metadata-file", f"{out}/meta.json")
    assert rc == 0
    assert (out / "local/srv/f").read_text() == "payload\n"
    assert (out / "local/srv/f").stat().st_mode & 0o777 == 0o640
    assert (out / "local/bin/busybox").exists()
    with tarfile.open(out / "oci.tar") as tar:
        assert {"oci-layout", "index.json"} <= set(tar.getnames())
    with tarfile.open(out / "d.tar") as tar:
        assert "manifest.json" in tar.getnames()
    with tarfile.open(out / "fs.tar") as tar:
        assert "./srv/f" in tar.getnames()
    meta = json.loads((out / "meta.json").read_text())
    with BuildStore.open(store_root) as store:
        assert meta["containerimage.digest"] == str(store.images.get("outs:1").target.digest)
    assert meta["image.name"] == "outs:1"


@pytest.mark.parametrize(("spec", "message"), [
    ("type=nope", "unknown type 'nope'"),
    ("type=local", "type=local needs dest=DIR"),
    ("dest=x", "type= is missing"),
])
def test_bad_output_specs(store_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          spec: str, message: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert build(store_root, ctx, "FROM busybox\n", "-o", spec) == 1
    assert message in capsys.readouterr().err


def test_context_bind_mount_hides_dockerignored_files(store_root: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "keep.txt").write_text("keep\n")
    (ctx / "secret.env").write_text("hidden\n")
    (ctx / "sub/also.env").write_text("hidden\n")
    (ctx / ".dockerignore").write_text("*.env\n**/*.env\n")
    rc = build(store_root, ctx, (
        "FROM busybox\n"
        "RUN --mount=type=bind,target=/ctx test -e /ctx/keep.txt && test ! -e /ctx/secret.env "
        "&& test ! -e /ctx/sub/also.env && echo ok > /checked\n"
        "RUN --mount=type=bind,target=/ctx,rw touch /ctx/new && test ! -e /ctx/secret.env\n"),
        "-t", "bind:1", "--cache-from", f"type=local,src={tmp_path / 'no-cache-yet'}")
    assert rc == 0, capsys.readouterr().err
    assert "no cache there yet" in capsys.readouterr().err
    assert not (ctx / "new").exists()
    with image_tree(store_root, "bind:1") as (tree, _):
        assert (tree / "checked").read_text() == "ok\n"
