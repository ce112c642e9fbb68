"""Dockerfile parser: golden cases plus focused checks of the pieces."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from builder.errors import BuildError, DockerfileError
from builder.frontend.instructions import (
    Arg,
    Copy,
    Env,
    From,
    Healthcheck,
    KeyValue,
    Run,
    parse_dockerfile,
    parse_duration,
)
from builder.frontend.parser import parse_json_array, split_flags, split_lines, split_words

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name.removesuffix(".Dockerfile") for p in GOLDEN.glob("*.Dockerfile"))


def _value(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    return value


def _render(text: str) -> dict[str, Any]:
    try:
        dockerfile = parse_dockerfile(text)
    except DockerfileError as exc:
        return {"error": exc.message, "line": exc.line}
    instructions = []
    for instruction in dockerfile.instructions:
        fields = _value(instruction)
        instructions.append({"type": type(instruction).__name__, **fields})
    return {"directives": _value(dockerfile.directives), "instructions": instructions}


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("name", CASES)
def test_golden(name: str) -> None:
    text = (GOLDEN / f"{name}.Dockerfile").read_text()
    expected_path = GOLDEN / f"{name}.expected.json"
    actual = _render(text)
    if os.environ.get("PYBUILD_UPDATE_GOLDEN") == "1":
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(expected_path.read_text())


def test_error_is_one_line_with_file_and_line() -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile("FROM alpine\nBOGUS x\n", file="app/Dockerfile")
    assert str(info.value) == "app/Dockerfile:2: unknown instruction: BOGUS"
    assert isinstance(info.value, BuildError)


def test_stages_and_global_args() -> None:
    df = parse_dockerfile("ARG X=1\nFROM a AS one\nRUN x\nFROM one\nCOPY --from=one /a /b\n")
    assert df.global_args == (Arg(1, (_arg("X", "1"),)),)
    assert [s.name for s in df.stages] == ["one", None]
    assert df.stages[0].from_ == From(2, "a", "one", None)
    assert isinstance(df.stages[0].instructions[0], Run)
    copy = df.stages[1].instructions[0]
    assert isinstance(copy, Copy) and copy.from_ == "one" and copy.sources == ("/a",)


def _arg(name: str, default: str | None) -> Any:
    from builder.frontend.instructions import ArgDef

    return ArgDef(name, default)


def test_flags_and_words() -> None:
    flags, rest = split_flags('--a=1 --b --c="x y" -- --not-a-flag z')
    assert [(f.name, f.value) for f in flags] == [("a", "1"), ("b", None), ("c", "x y")]
    assert rest == "--not-a-flag z"
    assert split_words(' a "b c"  d\'e f\' ') == ["a", '"b c"', "d'e f'"]


def test_json_array_detection() -> None:
    assert parse_json_array('["a", "b"]') == ["a", "b"]
    assert parse_json_array('["a"] tail') == ["a"]
    with pytest.raises(ValueError, match="strings only"):
        parse_json_array("[1]")
    assert parse_json_array("[ -f x ]") is None
    assert parse_json_array("echo") is None


def test_directives_only_at_top() -> None:
    directives, raws = split_lines("FROM a\n# escape=`\nRUN a `\n")
    assert directives.escape == "\\"
    assert raws[1].rest == "a `"


def test_unknown_directive_ends_the_directives() -> None:
    directives, _ = split_lines("# Syntax = x/y\n# unknown=1\n# escape=`\nFROM a\n")
    assert directives.syntax == "x/y"
    assert directives.escape == "\\"


def test_legacy_env_with_tab() -> None:
    env = parse_dockerfile("FROM a\nENV KEY\t some value \n").stages[0].instructions[0]
    assert isinstance(env, Env)
    assert env.pairs == (KeyValue("KEY", "some value"),)


def test_duplicate_directive() -> None:
    with pytest.raises(DockerfileError, match="only one escape parser directive"):
        parse_dockerfile("# escape=`\n# escape=\\\nFROM a\n")


def test_durations() -> None:
    assert parse_duration("1h2m3s") == 3723 * 10**9
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("250ms") == 250_000_000
    assert parse_duration("0") == 0
    for bad in ("10", "", "1x", "s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_healthcheck_negative_retries() -> None:
    with pytest.raises(DockerfileError, match="--retries cannot be negative"):
        parse_dockerfile("FROM a\nHEALTHCHECK --retries=-1 CMD true\n")
    hc = parse_dockerfile("FROM a\nHEALTHCHECK --timeout=2s CMD true\n").stages[0].instructions[0]
    assert isinstance(hc, Healthcheck) and hc.timeout == 2 * 10**9


def test_heredoc_in_onbuild_is_kept() -> None:
    df = parse_dockerfile("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN done\n")
    assert len(df.stages[0].instructions) == 2


def test_error_without_line() -> None:
    assert str(DockerfileError("file with no instructions", None)) == (
        "Dockerfile: file with no instructions"
    )


def test_dockerfile_lists_instructions_in_order() -> None:
    text = "ARG A\nFROM x AS one\nENV K=v\nFROM one\nUSER me\n"
    lines = [i.line for i in parse_dockerfile(text).instructions]
    assert lines == [1, 2, 3, 4, 5]
