"""BuildKit's Dockerfile build checks: ``pybuild build --check`` / ``--call=check``, the
warnings of a build, and ``# check=skip=…;error=true``. The expected rules, lines and messages
are what BuildKit v0.32.2 reports for the same files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builder.store import BuildStore
from tests.builder.test_build import build

FORM = """\
FROM busybox as BUILDER
MAINTAINER someone
from busybox AS builder2
FROM $NOPE AS scratch
FROM busybox AS last
RUN echo a \\

  b
"""
FORM_EXPECTED = [
    ("StageNameCasing", 1, "Stage name 'BUILDER' should be lowercase"),
    ("FromAsCasing", 1, "'as' and 'FROM' keywords' casing do not match"),
    ("MaintainerDeprecated", 2, "Maintainer instruction is deprecated in favor of using label"),
    ("ConsistentInstructionCasing", 3,
     "Command 'from' should match the case of the command majority (uppercase)"),
    ("FromAsCasing", 3, "'AS' and 'from' keywords' casing do not match"),
    ("ReservedStageName", 4,
     'Stage name should not use the same name as reserved stage "scratch"'),
    ("UndefinedArgInFrom", 4, "FROM argument 'NOPE' is not declared"),
    ("InvalidDefaultArgInFrom", 4,
     "Default value for ARG $NOPE results in empty or invalid base image name"),
    ("NoEmptyContinuation", 8, "Empty continuation line"),
]

STAGE = """\
FROM busybox AS base
ARG SECRET_TOKEN=x
ARG PUBLIC_KEY=y
ENV API_KEY value
LABEL a b
WORKDIR rel
CMD echo hi
CMD echo two
ENTRYPOINT echo e
EXPOSE 80/TCP 81/udp
RUN echo $UNDEFINED_THING $HOME $PATH
COPY ignored.txt /x
ADD ignored.txt /y
RUN echo done
"""
STAGE_EXPECTED = [
    ("SecretsUsedInArgOrEnv", 2,
     'Do not use ARG or ENV instructions for sensitive data (ARG "SECRET_TOKEN")'),
    ("LegacyKeyValueFormat", 4,
     '"ENV key=value" should be used instead of legacy "ENV key value" format'),
    ("SecretsUsedInArgOrEnv", 4,
     'Do not use ARG or ENV instructions for sensitive data (ENV "API_KEY")'),
    ("LegacyKeyValueFormat", 5,
     '"LABEL key=value" should be used instead of legacy "LABEL key value" format'),
    ("WorkdirRelativePath", 6,
     'Relative workdir "rel" can have unexpected results if the base image changes'),
    ("JSONArgsRecommended", 7,
     "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"),
    ("MultipleInstructionsDisallowed", 7, "Multiple CMD instructions should not be used in the "
     "same stage because only the last one will be used"),
    ("JSONArgsRecommended", 8,
     "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals"),
    ("JSONArgsRecommended", 9, "JSON arguments recommended for ENTRYPOINT to prevent "
     "unintended behavior related to OS signals"),
    ("ExposeProtoCasing", 10,
     "Defined protocol '80/TCP' in EXPOSE instruction should be lowercase"),
    ("CopyIgnoredFile", 12, 'Attempting to Copy file "ignored.txt" that is excluded by '
     ".dockerignore"),
    ("CopyIgnoredFile", 13, 'Attempting to Add file "ignored.txt" that is excluded by '
     ".dockerignore"),
]


def _found(out: str) -> list[tuple[str, int, str]]:
    blocks = re.findall(r"^WARNING: (\w+) - https://docs\.docker\.com/go/dockerfile/rule/"
                        r"[a-z-]+/\n(.*)\nDockerfile:(\d+)\n", out, re.M)
    return sorted((rule, int(line), message) for rule, message, line in blocks)


def _context(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "ignored.txt").write_text("x")
    (ctx / ".dockerignore").write_text("ignored.txt\n")
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


@pytest.mark.parametrize(("dockerfile", "expected"), [(FORM, FORM_EXPECTED),
                                                     (STAGE, STAGE_EXPECTED)])
def test_check_reports_what_buildkit_reports(store_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             dockerfile: str,
                                             expected: list[tuple[str, int, str]]) -> None:
    ctx = _context(tmp_path, dockerfile)
    assert build(store_root, ctx, dockerfile, "--check", "-t", "checked:1") == 1
    out = capsys.readouterr().out
    assert out.startswith(f"Check complete, {len(expected)} warnings have been found!\n")
    assert _found(out) == sorted(expected)
    with BuildStore.open(store_root) as store:
        assert "checked:1" not in [r.name for r in store.images.list()]


def test_the_listing_shows_the_lines_around(store_root: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = "FROM busybox\nCMD echo hi\n"
    ctx = _context(tmp_path, dockerfile)
    assert build(store_root, ctx, dockerfile, "--call=check") == 1
    assert capsys.readouterr().out == (
        "Check complete, 1 warning has been found!\n\n"
        "WARNING: JSONArgsRecommended - "
        "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/\n"
        "JSON arguments recommended for CMD to prevent unintended behavior related to OS "
        "signals\nDockerfile:2\n--------------------\n"
        "   1 |     FROM busybox\n   2 | >>> CMD echo hi\n   3 |     \n"
        "--------------------\n\n")


def test_a_clean_file_and_stages_the_target_does_not_need(
        store_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = "FROM busybox AS unused\nCMD echo hi\nFROM busybox\nCMD [\"sh\"]\n"
    ctx = _context(tmp_path, dockerfile)
    assert build(store_root, ctx, dockerfile, "--check") == 0
    assert capsys.readouterr().out == "Check complete, no warnings found.\n"


def test_a_build_warns_and_error_true_fails_it(store_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    dockerfile = "FROM busybox\nCMD echo hi\n"
    ctx = _context(tmp_path, dockerfile)
    assert build(store_root, ctx, dockerfile, "-t", "warned:1") == 0
    assert "WARNING: JSONArgsRecommended: JSON arguments recommended for CMD to prevent " \
        "unintended behavior related to OS signals (line 2)" in capsys.readouterr().err
    strict = "# check=error=true\n" + dockerfile
    assert build(store_root, ctx, strict, "-t", "strict:1") == 1
    err = capsys.readouterr().err
    assert "error: Dockerfile:3: lint violation found for rules: JSONArgsRecommended" in err
    assert "Traceback" not in err
    with BuildStore.open(store_root) as store:
        assert "strict:1" not in [r.name for r in store.images.list()]
    skipped = "# check=skip=JSONArgsRecommended;error=true\n" + dockerfile
    assert build(store_root, ctx, skipped, "-t", "skipped:1") == 0
    assert "JSONArgsRecommended" not in capsys.readouterr().err
    assert build(store_root, ctx, strict, "-t", "arg:1",
                 "--build-arg", "BUILDKIT_DOCKERFILE_CHECK=skip=all") == 0
    err = capsys.readouterr().err
    assert "JSONArgsRecommended" not in err and "not consumed" not in err
