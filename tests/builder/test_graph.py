"""The build graph: golden Dockerfile → op graph listings, op digests, the mount parser at
compile time."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.errors import DockerfileError, ImageNotFound
from builder.frontend.convert import plan
from builder.frontend.instructions import parse_dockerfile
from builder.graph.compile import compile_graph
from builder.graph.ops import ContextSource, CopyOp, Exec, ImageSource
from builder.graph.plan import BuildGraph
from builder.graph.render import render
from layerstore.errors import NotFound
from layerstore.oci import Image, ImageConfig, Platform

GOLDEN = Path(__file__).parent / "golden" / "graph"
CASES = sorted(p.name.removesuffix(".Dockerfile") for p in GOLDEN.glob("*.Dockerfile"))
AMD64 = Platform(os="linux", architecture="amd64")

#: The base images the golden cases may name, as their configs.
IMAGES = {
    "busybox": Image(config=ImageConfig(env=("PATH=/usr/sbin:/usr/bin:/sbin:/bin",),
                                        cmd=("sh",))),
    "with-triggers": Image(config=ImageConfig(
        env=("PATH=/bin",), working_dir="/work",
        on_build=("COPY . /work/", "RUN --mount=type=cache,target=/c make"))),
}


class TableImages:
    """Base image configs from :data:`IMAGES`."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def image(self, ref: str, platform: Platform) -> Image:
        self.asked.append(ref)
        if ref not in IMAGES:
            raise ImageNotFound(f"image {ref!r} not found")
        return IMAGES[ref]


def compile_text(text: str, target: str | None = None, images: TableImages | None = None,
                 **build_args: str) -> BuildGraph:
    dockerfile = parse_dockerfile(text)
    p = plan(dockerfile, build_args=build_args, target=target, build_platform=AMD64,
             target_platform=AMD64)
    return compile_graph(p, build_args=build_args, network="default",
                         images=images or TableImages())


def _render(text: str) -> str:
    try:
        return render(compile_text(text))
    except DockerfileError as exc:
        return f"error: {exc}\n"


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 8


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    text = (GOLDEN / f"{name}.Dockerfile").read_text()
    expected_path = GOLDEN / f"{name}.graph"
    actual = _render(text)
    if os.environ.get("PYBUILD_UPDATE_GOLDEN") == "1":
        expected_path.write_text(actual)
    assert actual == expected_path.read_text()


def test_bad_mount_fails_at_compile_time_with_its_line() -> None:
    with pytest.raises(DockerfileError) as info:
        compile_text("FROM busybox\nRUN true\nRUN --mount=type=cache,target=/x,bogus=1 true\n")
    assert str(info.value).startswith("Dockerfile:3: --mount=type=cache,target=/x,bogus=1: ")
    assert "unknown mount option 'bogus'" in str(info.value)


def test_unused_stage_base_is_never_asked_for() -> None:
    images = TableImages()
    compile_text("FROM not-there AS unused\nRUN x\nFROM busybox\nRUN y\n", images=images)
    assert images.asked == ["busybox"]


def test_digests_ignore_lines_and_follow_inputs() -> None:
    one = compile_text("FROM busybox\nRUN make\n")
    two = compile_text("FROM busybox\n\n\nRUN make\n")
    three = compile_text("FROM busybox\nENV X=1\nRUN make\n")
    root = [s.root for s in (one.stages[0], two.stages[0], three.stages[0])]
    assert root[0].digest == root[1].digest
    assert root[0].digest != root[2].digest  # the environment differs


def test_a_config_only_instruction_makes_no_op() -> None:
    graph = compile_text("FROM busybox\nRUN a\nLABEL x=1\nUSER nobody\n")
    stage = graph.stages[0]
    assert [s.op is None for s in stage.steps] == [False, True, True]
    assert stage.root is stage.steps[0].op


def test_shared_prefix_is_one_op() -> None:
    graph = compile_text("FROM busybox AS a\nRUN deps\nRUN a\nFROM busybox AS b\nRUN deps\n"
                         "RUN b\nFROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n")
    deps = [s.steps[0].op for s in (graph.stages[0], graph.stages[1])]
    assert deps[0] == deps[1] and deps[0] is not None
    assert sum(1 for op in graph.ops() if isinstance(op, Exec)) == 3


def test_copy_inputs() -> None:
    graph = compile_text("FROM busybox AS a\nRUN x\nFROM scratch\nCOPY --from=a /x /x\n"
                         "COPY --from=busybox /bin /bin\nCOPY y /y\n")
    ops = [s.op for s in graph.stages[1].steps]
    assert all(isinstance(op, CopyOp) for op in ops)
    sources = [op.source for op in ops if isinstance(op, CopyOp)]
    assert sources[0] == graph.stages[0].root
    assert sources[1] == ImageSource("busybox", AMD64)
    assert isinstance(sources[2], ContextSource)
    assert graph.stages[1].reads == frozenset({0})


def test_print_graph_builds_nothing(store_root: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from builder.cli import main
    from builder.store import BuildStore

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "app.txt").write_text("app\n")
    (context / "Dockerfile").write_text(
        "FROM not-pulled-because-unused AS docs\nRUN make docs\n"
        "FROM busybox\nCOPY app.txt /app/\nRUN --mount=type=cache,target=/c cat /app/app.txt\n")
    with BuildStore.open(store_root) as store:
        before = len(store.cache.records())
    assert main(["--root", str(store_root), "build", "--print-graph", "-t", "graph-x",
                 str(context)]) == 0
    out = capsys.readouterr().out
    assert "image busybox linux/" in out and "not-pulled" not in out
    assert "copy on " in out and "mount cache /c id=/c" in out
    with BuildStore.open(store_root) as store:
        assert len(store.cache.records()) == before
        with pytest.raises(NotFound):
            store.images.get("graph-x")


def test_print_graph_reports_bad_mount_with_line(store_root: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from builder.cli import main

    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\n\nRUN --mount=type=bind,tgt=/x true\n")
    assert main(["--root", str(store_root), "build", "--print-graph", str(context)]) != 0
    err = capsys.readouterr().err
    assert "Dockerfile:3: --mount=type=bind,tgt=/x: unknown mount option 'tgt'" in err
