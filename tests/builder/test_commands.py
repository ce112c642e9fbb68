"""The image commands of ``pybuild``: images, inspect, history, tag and rmi, plus the
output helpers they share. Images are made with layerstore in a store under tmp_path."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from builder.cli import main
from builder.commands.common import (
    ellipsis,
    familiar_name,
    human_duration,
    human_size,
    parse_created,
    render_template,
)
from builder.errors import BuildError
from builder.store import BuildStore
from layerstore.assembly import (
    StoredImage,
    assemble_image,
    history_entry,
    host_architecture,
    load_image,
)
from layerstore.content.copy import put_bytes
from layerstore.diff import write_tree
from layerstore.digest import Digest
from layerstore.oci import (
    Healthcheck,
    Image,
    ImageConfig,
    Index,
    MediaType,
    Platform,
    describe,
)

CREATED = "2024-01-01T00:00:00Z"
GREETING = "hello from a pybuild command test"
BASE = "pybuild-test/cmd-base:1"
APP = "pybuild-test/cmd-app:2"
LONG_STEP = "RUN /bin/sh -c echo a rather long command line that docker truncates"
APP_CONFIG = ImageConfig(
    env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=from the image"),
    entrypoint=("sh", "-c"), cmd=('echo "$GREETING"; cat /opt/note',), working_dir="/opt",
    user="nobody", exposed_ports={"8080/tcp": {}}, labels={"team": "builders"},
    stop_signal="SIGTERM", volumes={"/data": {}}, shell=("/bin/sh", "-c"),
    healthcheck=Healthcheck(test=("CMD", "true"), interval=30_000_000_000),
    on_build=("RUN true",),
)


def make_image(store: BuildStore, name: str, rootfs: Path, work: Path, *,
               extra: dict[str, str] | None = None,
               config: ImageConfig | None = None) -> StoredImage:
    """busybox as one layer, plus an ENV history entry and a layer of ``extra`` files."""
    layers = [write_tree(rootfs, store.content, "gzip", source_date_epoch=0)]
    history = [history_entry("busybox rootfs", created=CREATED)]
    if extra:
        tree = work / f"extra-{len(list(work.glob('extra-*')))}"
        for path, text in extra.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)
        layers.append(write_tree(tree, store.content, "gzip", source_date_epoch=0))
        history += [
            history_entry("ENV GREETING=from the image", empty_layer=True, created=CREATED,
                          comment="buildkit.dockerfile.v0"),
            history_entry(LONG_STEP, created="2024-01-02T00:00:00.123456789Z",
                          comment="buildkit.dockerfile.v0"),
        ]
    image = Image(architecture=host_architecture(), os="linux", created=CREATED,
                  config=config or ImageConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",),
                                               cmd=("sh", "-c", f"echo {GREETING}")),
                  history=tuple(history))
    stored = assemble_image(store.content, image, layers)
    store.images.put(name, stored.manifest)
    return stored


def seed(root: Path, rootfs: Path, work: Path) -> None:
    """A store with BASE (busybox) and APP (busybox + /opt/note, a full config)."""
    work.mkdir(parents=True, exist_ok=True)
    with BuildStore.open(root) as store:
        make_image(store, BASE, rootfs, work)
        make_image(store, APP, rootfs, work, extra={"opt/note": "second layer\n"},
                   config=APP_CONFIG)


def pybuild(root: Path, *args: str) -> int:
    """Run ``pybuild --root ROOT ARGS…`` in this process; return the exit status."""
    return main(["--root", str(root), *args])


def stored_image(root: Path, name: str) -> StoredImage:
    """The image called ``name`` in the store at ``root``."""
    with BuildStore.open(root) as store:
        return load_image(store.content, store.images.get(name).target)


def test_images_table(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, app = stored_image(root, BASE), stored_image(root, APP)
    assert pybuild(root, "images") == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{3,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    rows = [re.split(r"\s{3,}", line) for line in lines[1:]]
    assert [r[:3] for r in rows] == [
        ["pybuild-test/cmd-app", "2", app.config.digest.hex[:12]],
        ["pybuild-test/cmd-base", "1", base.config.digest.hex[:12]],
    ]
    assert all(re.fullmatch(r"\d+ (years|months) ago", r[3]) for r in rows)
    assert all(re.fullmatch(r"[0-9.]+MB", r[4]) for r in rows)
    assert lines[0].index("IMAGE ID") == lines[1].index(app.config.digest.hex[:12])


def test_images_quiet_digests_format_and_filter(root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    app = stored_image(root, APP)
    assert pybuild(root, "images", "-q") == 0
    assert len(capsys.readouterr().out.split()) == 2
    assert pybuild(root, "images", "--digests", "pybuild-test/cmd-app") == 0
    out = capsys.readouterr().out.splitlines()
    assert "DIGEST" in out[0] and len(out) == 2 and str(app.manifest.digest) in out[1]
    assert pybuild(root, "images", "--format", "json", "pybuild-test/cmd-app:2") == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["Repository"], row["Tag"], row["ID"]) == (
        "pybuild-test/cmd-app", "2", app.config.digest.hex[:12])
    assert row["CreatedAt"] == "2024-01-01 00:00:00 +0000 UTC"
    assert pybuild(root, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                   "pybuild-test/cmd-app:nope") == 0
    assert capsys.readouterr().out == ""
    assert pybuild(root, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}",
                   "pybuild-test/cmd-app") == 0
    assert capsys.readouterr().out == f"pybuild-test/cmd-app:2 {app.config.digest}\n"


def test_inspect_shows_the_config_like_docker(root: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    app = stored_image(root, APP)
    assert pybuild(root, "inspect", APP) == 0
    [doc] = json.loads(capsys.readouterr().out)
    assert doc["Id"] == str(app.config.digest)
    assert doc["RepoTags"] == [APP] and doc["RepoDigests"] == []
    assert doc["Manifest"] == str(app.manifest.digest)
    assert doc["Created"] == CREATED and doc["Os"] == "linux"
    assert doc["Architecture"] == host_architecture()
    assert doc["RootFS"] == {"Type": "layers",
                             "Layers": [str(d) for d in app.image.rootfs.diff_ids]}
    config = doc["Config"]
    assert config["Entrypoint"] == ["sh", "-c"] and config["WorkingDir"] == "/opt"
    assert config["User"] == "nobody" and config["Labels"] == {"team": "builders"}
    assert config["ExposedPorts"] == {"8080/tcp": {}} and config["Volumes"] == {"/data": {}}
    assert config["StopSignal"] == "SIGTERM" and config["OnBuild"] == ["RUN true"]
    assert config["Shell"] == ["/bin/sh", "-c"]
    assert config["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 30_000_000_000}
    assert doc["Size"] > 1_000_000 and doc["Comment"] == "buildkit.dockerfile.v0"


def test_inspect_by_id_with_templates(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = stored_image(root, BASE)
    short = base.config.digest.hex[:8]
    assert pybuild(root, "inspect", "--format", "{{.Id}}|{{json .Config.Env}}|{{.Config.Cmd}}",
                   short) == 0
    assert capsys.readouterr().out == (
        f'{base.config.digest}|["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]|'
        f"[sh -c echo {GREETING}]\n")
    assert pybuild(root, "inspect", "--format", "json", str(base.config.digest), BASE) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["Id"] for line in lines] == [str(base.config.digest)] * 2


def test_inspect_reports_unknown_images_and_prints_the_rest(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "inspect", BASE, "nosuch") == 1
    captured = capsys.readouterr()
    assert [d["RepoTags"] for d in json.loads(captured.out)] == [[BASE]]
    assert captured.err == "error: no image named nosuch:latest\n"


def test_history_newest_first_like_docker(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = stored_image(root, APP)
    assert pybuild(root, "history", APP) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.split(r"\s{3,}", lines[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE",
                                             "COMMENT"]
    rows = [re.split(r"\s{3,}", line.strip()) for line in lines[1:]]
    assert [r[0] for r in rows] == [app.config.digest.hex[:12], "<missing>", "<missing>"]
    assert rows[0][2] == LONG_STEP[:44] + "…"
    assert rows[1][2:] == ["ENV GREETING=from the image", "0B", "buildkit.dockerfile.v0"]
    assert rows[2][2] == "busybox rootfs" and rows[2][3].endswith("MB")
    assert pybuild(root, "history", "--no-trunc", "--format", "{{.ID}} {{.CreatedBy}}", APP) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{app.config.digest} {LONG_STEP}"


def test_tag_and_rmi(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = stored_image(root, BASE)
    assert pybuild(root, "tag", BASE, "localhost:5000/team/base:v1") == 0
    assert pybuild(root, "tag", base.config.digest.hex[:12], "other") == 0
    assert capsys.readouterr().out == ""
    assert pybuild(root, "images", "--format", "{{.Repository}}:{{.Tag}}", "other") == 0
    assert capsys.readouterr().out == "other:latest\n"
    assert pybuild(root, "rmi", base.config.digest.hex[:12]) == 1
    assert "has several names" in capsys.readouterr().err
    assert pybuild(root, "rmi", "other", "docker.io/library/other", "localhost:5000/team/base:v1"
                   ) == 1
    captured = capsys.readouterr()
    assert captured.out == "Untagged: other:latest\nUntagged: localhost:5000/team/base:v1\n"
    assert captured.err == "error: no image named docker.io/library/other:latest\n"
    assert pybuild(root, "rmi", base.config.digest.hex[:12]) == 0
    assert capsys.readouterr().out == f"Untagged: {BASE}\n"
    assert pybuild(root, "images", "-q") == 0
    assert capsys.readouterr().out == stored_image(root, APP).config.digest.hex[:12] + "\n"


def test_rmi_force_removes_every_name_of_an_id(root: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = stored_image(root, BASE)
    assert pybuild(root, "tag", BASE, "again:v2") == 0
    assert pybuild(root, "rmi", "-f", str(base.config.digest)) == 0
    assert capsys.readouterr().out == f"Untagged: again:v2\nUntagged: {BASE}\n"


def test_familiar_names_find_docker_io_images(root: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert pybuild(root, "tag", BASE, "docker.io/library/busybox:latest") == 0
    assert pybuild(root, "inspect", "--format", "{{.RepoTags}}", "busybox") == 0
    assert capsys.readouterr().out == f"[busybox:latest {BASE}]\n"
    assert pybuild(root, "rmi", "docker.io/busybox") == 0
    assert capsys.readouterr().out == "Untagged: busybox:latest\n"


@pytest.mark.parametrize(("args", "message"), [
    (("inspect", "nosuch"), "error: no image named nosuch:latest"),
    (("history", "nosuch:v1"), "error: no image named nosuch:v1"),
    (("tag", "nosuch", "x"), "error: no image named nosuch:latest"),
    (("tag", BASE, "Bad:Name"), "error: invalid image name 'Bad:Name'"),
    (("rmi", "foo"), "error: no image named foo:latest"),
    (("run", "nosuch"), "error: no image named nosuch:latest"),
    (("save", "-o", "/tmp/never-written.tar", "nosuch"), "error: no image named nosuch:latest"),
    (("images", "Bad"), "error: invalid image name 'Bad'"),
    (("inspect", "sha256:" + "0" * 64), "error: no image with ID sha256:" + "0" * 64),
    (("inspect", "--format", "{{range .RepoTags}}x{{end}}", BASE),
     "error: template action '{{range .RepoTags}}' is not supported"),
])
def test_bad_input_is_one_error_line(root: Path, capsys: pytest.CaptureFixture[str],
                                     args: tuple[str, ...], message: str) -> None:
    assert pybuild(root, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert not Path("/tmp/never-written.tar").exists()


def test_sizes_durations_and_names() -> None:
    assert [human_size(n) for n in (0, 999, 1000, 12_345, 1_990_000, 12_300_000_000)] == [
        "0B", "999B", "1kB", "12.3kB", "1.99MB", "12.3GB"]
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 3599, 3600, 47 * 3600, 13 * 86400,
                                        20 * 86400, 100 * 86400, 3 * 365 * 86400)] == [
        "Less than a second", "1 second", "59 seconds", "About a minute", "59 minutes",
        "About an hour", "47 hours", "13 days", "2 weeks", "3 months", "3 years"]
    moment = parse_created("2024-01-02T03:04:05.123456789Z")
    assert moment is not None and moment.microsecond == 123456
    assert parse_created("yesterday") is None
    assert ellipsis("abcdef", 4) == "abc…" and ellipsis("abc", 4) == "abc"
    assert familiar_name("docker.io/library/busybox") == "busybox:latest"
    assert familiar_name("docker.io/team/app:v1") == "team/app:v1"
    assert familiar_name("localhost:5000/app") == "localhost:5000/app:latest"


def test_templates() -> None:
    doc = {"Id": "x", "Config": {"Env": ["A=1"], "Labels": {"b": "2", "a": "1"}, "User": ""},
           "Flag": True}
    assert render_template("{{.Id}}-{{ .Config.Env }}-{{.Config.Labels}}-{{.Flag}}", doc) == (
        "x-[A=1]-map[a:1 b:2]-true")
    assert render_template("{{json .Config}}", doc) == json.dumps(doc["Config"])
    assert render_template("{{.Missing}}\\t{{.Config.User}}.", doc) == "<no value>\t."
    with pytest.raises(BuildError, match="unclosed"):
        render_template("{{.Id", doc)


def test_a_damaged_image_is_reported_not_fatal(root: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    app = stored_image(root, APP)
    (root / "content/blobs/sha256" / app.config.digest.hex).unlink()
    assert pybuild(root, "images", "--format", "{{.Repository}}") == 0
    captured = capsys.readouterr()
    assert captured.out == "pybuild-test/cmd-base\n"
    assert captured.err.startswith(f"WARNING: image {APP} is damaged: blob {app.config.digest}")
    assert pybuild(root, "inspect", APP) == 1
    assert capsys.readouterr().err.startswith("error: blob ")
    assert pybuild(root, "prune", "-a", "-f") == 1
    assert capsys.readouterr().err.startswith(f"error: cannot tell what image {APP} needs")
    assert pybuild(root, "rmi", APP) == 0
    assert pybuild(root, "prune", "-a", "-f") == 0
    assert "Deleted blob: " in capsys.readouterr().out


def test_a_name_for_an_index_resolves_to_this_platform(root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    app = stored_image(root, APP)
    with BuildStore.open(root) as store:
        entry = replace(app.manifest, platform=Platform(architecture=host_architecture(),
                                                        os="linux"))
        other = replace(app.manifest, digest=Digest("sha256", "e" * 64),
                        platform=Platform(architecture="riscv64", os="linux"))
        raw = Index(manifests=(other, entry)).to_json()
        put_bytes(store.content, raw)
        index = describe(MediaType.OCI_INDEX, raw)
        store.images.put("pybuild-test/cmd-multi:1", index)
    assert pybuild(root, "inspect", "--format", "{{.Id}} {{.Manifest}} {{.Index}}",
                   "pybuild-test/cmd-multi:1") == 0
    assert capsys.readouterr().out == f"{app.config.digest} {app.manifest.digest} {index.digest}\n"
    assert pybuild(root, "rmi", APP) == 0
    assert pybuild(root, "prune", "-a", "-f") == 0
    assert "Deleted blob" not in capsys.readouterr().out
    archive = tmp_path / "multi.tar"
    assert pybuild(root, "save", "-o", str(archive), "pybuild-test/cmd-multi:1") == 0
    fresh = tmp_path / "fresh"
    assert pybuild(fresh, "load", "-i", str(archive)) == 0
    assert stored_image(fresh, "pybuild-test/cmd-multi:1").config == app.config
