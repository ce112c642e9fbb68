"""Build plans: global ARGs in FROM, stage references, pruning by --target."""

from __future__ import annotations

import pytest

from builder.errors import DockerfileError
from builder.frontend.convert import (
    parse_platform,
    plan,
    platform_args,
    unused_build_args,
)
from builder.frontend.instructions import parse_dockerfile
from layerstore.oci import Platform

pytestmark = pytest.mark.unit

HOST = Platform(os="linux", architecture="amd64")


def _plan(text: str, target: str | None = None, **build_args: str):  # type: ignore[no-untyped-def]
    return plan(parse_dockerfile(text), build_args=build_args, target=target,
                build_platform=HOST, target_platform=HOST)


def test_global_arg_in_from_with_default_and_override() -> None:
    text = "ARG BASE=busybox\nARG TAG=1\nFROM ${BASE}:${TAG}\n"
    assert _plan(text).stages[0].base_image == "busybox:1"
    assert _plan(text, TAG="2").stages[0].base_image == "busybox:2"


def test_predefined_platform_args_in_from() -> None:
    p = _plan("FROM img-$TARGETARCH\n")
    assert p.stages[0].base_image == "img-amd64"
    assert platform_args(HOST, Platform(os="linux", architecture="arm64", variant="v8"))[
        "TARGETPLATFORM"] == "linux/arm64/v8"


def test_stage_dag_and_target_pruning() -> None:
    text = ("FROM busybox AS base\n"
            "FROM base AS build\nRUN make\n"
            "FROM busybox AS docs\nRUN mkdocs\n"
            "FROM scratch\nCOPY --from=build /out /out\n")
    p = _plan(text)
    assert sorted(p.stages) == [0, 1, 3]  # docs is not needed
    assert p.stages[1].base_stage == 0 and p.stages[1].base_image is None
    assert p.stages[3].reads == frozenset({1}) and p.stages[3].base_image == "scratch"
    assert sorted(_plan(text, target="docs").stages) == [2]


def test_copy_from_index_and_arg() -> None:
    text = ("FROM busybox\nRUN x\n"
            "FROM busybox AS two\nARG SRC=0\nCOPY --from=$SRC /a /a\n")
    assert _plan(text).stages[1].reads == frozenset({0})


def test_mount_from_stage_is_a_dependency() -> None:
    text = "FROM busybox AS a\nFROM busybox\nRUN --mount=type=bind,from=a,target=/x true\n"
    assert _plan(text).stages[1].reads == frozenset({0})


@pytest.mark.parametrize(("text", "target", "message", "line"), [
    ("FROM a\n", "nope", "target stage 'nope' could not be found", None),
    ("FROM a AS x\nCOPY --from=y /a /b\nFROM b AS y\n", None, "defined later", 2),
    ("FROM a AS x\nCOPY --from=x /a /b\n", None, "cannot copy from itself", 2),
    ("ARG B\nFROM ${B}\n", None, "expands to an empty string", 2),
    ("FROM --platform=linux a\n", None, "invalid platform", 1),
])
def test_plan_errors(text: str, target: str | None, message: str, line: int | None) -> None:
    with pytest.raises(DockerfileError) as info:
        _plan(text, target=target)
    assert message in str(info.value)
    assert info.value.line == line


def test_unused_build_args() -> None:
    df = parse_dockerfile("ARG A\nFROM x\nARG B\n")
    assert unused_build_args(df, {"A": "1", "B": "2", "C": "3", "HTTP_PROXY": "p"}) == ["C"]


def test_parse_platform() -> None:
    assert parse_platform("linux/arm64/v8") == Platform(os="linux", architecture="arm64",
                                                        variant="v8")
    with pytest.raises(ValueError):
        parse_platform("linux")
