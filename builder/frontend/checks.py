"""BuildKit's Dockerfile build checks: the rules, their names and messages.

:func:`check_dockerfile` lints a Dockerfile as BuildKit's frontend does. Rules about the
file's form (casing, stage names, ``FROM`` arguments, empty continuation lines, MAINTAINER)
look at every stage; rules about instructions look only at the stages the target needs. The
``# check=skip=RULE,...;error=true`` directive (or the ``BUILDKIT_DOCKERFILE_CHECK`` build
argument) skips rules and makes violations fail the build. ``UndefinedVar`` is not checked.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from builder.errors import ExpansionError
from builder.frontend.dockerignore import DockerIgnore
from builder.frontend.instructions import (
    Add,
    Arg,
    Cmd,
    Copy,
    Dockerfile,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Workdir,
)
from builder.frontend.parser import RawInstruction, split_lines
from builder.frontend.words import process_word

__all__ = ["RULES", "CheckPolicy", "CheckWarning", "check_dockerfile", "check_policy",
           "report", "summary"]

#: Every rule this module checks, with the slug of its page under
#: https://docs.docker.com/go/dockerfile/rule/.
RULES = {
    "StageNameCasing": "stage-name-casing",
    "FromAsCasing": "from-as-casing",
    "NoEmptyContinuation": "no-empty-continuation",
    "ConsistentInstructionCasing": "consistent-instruction-casing",
    "DuplicateStageName": "duplicate-stage-name",
    "ReservedStageName": "reserved-stage-name",
    "JSONArgsRecommended": "json-args-recommended",
    "MaintainerDeprecated": "maintainer-deprecated",
    "UndefinedArgInFrom": "undefined-arg-in-from",
    "WorkdirRelativePath": "workdir-relative-path",
    "MultipleInstructionsDisallowed": "multiple-instructions-disallowed",
    "LegacyKeyValueFormat": "legacy-key-value-format",
    "InvalidDefaultArgInFrom": "invalid-default-arg-in-from",
    "FromPlatformFlagConstDisallowed": "from-platform-flag-const-disallowed",
    "CopyIgnoredFile": "copy-ignored-file",
    "SecretsUsedInArgOrEnv": "secrets-used-in-arg-or-env",
    "ExposeProtoCasing": "expose-proto-casing",
}
_RESERVED_STAGES = ("scratch", "context")
_SECRET = re.compile(r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword"
                     r"|passwd|secret|token)(?:_|$)")
_NOT_SECRET = re.compile(r"(?i)(?:_|^)public(?:_|$)")
_PLATFORM_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM",
                  "TARGETOS", "TARGETARCH", "TARGETVARIANT")
_ARG_REF = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)|([A-Za-z_][A-Za-z0-9_]*))")
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+|/)*(?::\d+/[^:@]+)?(?::[\w][\w.-]{0,127})?"
                    r"(?:@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True)
class CheckWarning:
    """One violation: the rule's name, its message and the line it is about."""

    rule: str
    message: str
    line: int

    @property
    def url(self) -> str:
        """The rule's documentation page."""
        return f"https://docs.docker.com/go/dockerfile/rule/{RULES[self.rule]}/"


@dataclass(frozen=True)
class CheckPolicy:
    """What ``# check=`` asks: rules to ``skip`` (``all`` skips every one) and whether a
    violation is an ``error``."""

    skip: frozenset[str] = frozenset()
    error: bool = False

    def keeps(self, rule: str) -> bool:
        """Whether ``rule`` is checked."""
        return "all" not in self.skip and rule not in self.skip


def check_policy(directive: str | None, build_arg: str | None = None) -> CheckPolicy:
    """The policy of the ``check`` directive, overridden by the ``BUILDKIT_DOCKERFILE_CHECK``
    build argument when that is given."""
    text = build_arg if build_arg is not None else directive
    skip: set[str] = set()
    error = False
    for part in (text or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip() == "skip":
            skip |= {r.strip() for r in value.split(",") if r.strip()}
        elif key.strip() == "error":
            error = value.strip().lower() == "true"
    return CheckPolicy(frozenset(skip), error)


def check_dockerfile(text: str, dockerfile: Dockerfile, *, needed: Collection[int],
                     ignore: DockerIgnore | None = None,
                     policy: CheckPolicy | None = None) -> list[CheckWarning]:
    """The violations of ``dockerfile`` (parsed from ``text``); instruction rules look only
    at the stages whose indexes are in ``needed``. Sorted by line."""
    _, raws = split_lines(text)
    raw_at = {r.line: r for r in raws}
    found = [*_form(text, raws), *_stages(dockerfile, raw_at), *_froms(dockerfile)]
    for index in sorted(needed):
        found.extend(_instructions(dockerfile.stages[index].instructions, raw_at, ignore))
    keep = policy or CheckPolicy()
    return sorted((w for w in found if keep.keeps(w.rule)), key=lambda w: w.line)


def _form(text: str, raws: list[RawInstruction]) -> Iterable[CheckWarning]:
    keywords = [(r, r.original.lstrip().split(None, 1)[0]) for r in raws if r.original.strip()]
    upper = sum(1 for _, k in keywords if k.isupper())
    lower = sum(1 for _, k in keywords if k.islower())
    majority = "uppercase" if upper >= lower else "lowercase"
    for raw, word in keywords:
        if (word.isupper() if majority == "uppercase" else word.islower()):
            continue
        yield CheckWarning("ConsistentInstructionCasing", f"Command '{word}' should match the "
                           f"case of the command majority ({majority})", raw.line)
    for raw, word in keywords:
        if raw.keyword == "maintainer":
            yield CheckWarning("MaintainerDeprecated", "Maintainer instruction is deprecated in "
                               "favor of using label", raw.line)
        if raw.keyword == "from":
            words = raw.original.split()
            as_word = next((w for w in words[1:] if w.lower() == "as"), None)
            if as_word is not None and (word.isupper() != as_word.isupper()
                                        or word.islower() != as_word.islower()):
                yield CheckWarning("FromAsCasing", f"'{as_word}' and '{word}' keywords' casing "
                                   "do not match", raw.line)
    yield from _empty_continuations(text)


def _empty_continuations(text: str) -> Iterable[CheckWarning]:
    continuing = gap = False
    for number, line in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        stripped = line.strip()
        if continuing and not stripped:
            gap = True
            continue
        if continuing and stripped.startswith("#"):
            continue
        if gap and stripped:
            yield CheckWarning("NoEmptyContinuation", "Empty continuation line", number)
        gap = False
        continuing = stripped.endswith(("\\", "`")) and not stripped.startswith("#")


def _stages(dockerfile: Dockerfile, raw_at: Mapping[int, RawInstruction]
            ) -> Iterable[CheckWarning]:
    seen: set[str] = set()
    for stage in dockerfile.stages:
        line = stage.from_.line
        words = raw_at[line].original.split() if line in raw_at else []
        original = words[-1] if stage.name and words else stage.name
        if stage.name is None or original is None:
            continue
        if original != original.lower():
            yield CheckWarning("StageNameCasing", f"Stage name '{original}' should be lowercase",
                               line)
        if stage.name in seen:
            yield CheckWarning("DuplicateStageName", f'Duplicate stage name "{stage.name}", '
                               "stage names should be unique", line)
        seen.add(stage.name)
        if stage.name in _RESERVED_STAGES:
            yield CheckWarning("ReservedStageName", "Stage name should not use the same name as "
                               f'reserved stage "{stage.name}"', line)


def _froms(dockerfile: Dockerfile) -> Iterable[CheckWarning]:
    declared: dict[str, str | None] = {}
    for arg in dockerfile.global_args:
        for d in arg.args:
            declared[d.name] = d.default
    defaults = {k: v for k, v in declared.items() if v is not None}
    escape = dockerfile.directives.escape
    for stage in dockerfile.stages:
        from_ = stage.from_
        words = [from_.image, *([from_.platform] if from_.platform else [])]
        for word in words:
            for match in _ARG_REF.finditer(word):
                name = match.group(1) or match.group(2)
                if name not in declared and name not in _PLATFORM_ARGS:
                    yield CheckWarning("UndefinedArgInFrom", f"FROM argument '{name}' is not "
                                       "declared", from_.line)
        if "$" in from_.image:
            try:
                image = process_word(from_.image, defaults, escape)
            except ExpansionError:
                image = ""
            if not image or not _IMAGE.match(image.lower()):
                yield CheckWarning("InvalidDefaultArgInFrom", "Default value for ARG "
                                   f"{from_.image} results in empty or invalid base image "
                                   "name", from_.line)
        platform = from_.platform
        if platform and "$" not in platform and not (
                stage.name and platform.split("/")[-1] in stage.name):
            yield CheckWarning("FromPlatformFlagConstDisallowed", "FROM --platform flag should "
                               f'not use constant value "{platform}"', from_.line)


def _instructions(instructions: Iterable[Instruction], raw_at: Mapping[int, RawInstruction],
                  ignore: DockerIgnore | None) -> Iterable[CheckWarning]:
    last: dict[str, int] = {}
    absolute_workdir = False
    found: list[CheckWarning] = []
    for ins in instructions:
        raw = raw_at.get(ins.line)
        keyword = type(ins).__name__.upper()
        if isinstance(ins, Cmd | Entrypoint | Healthcheck):
            if keyword in last:
                found.append(CheckWarning(
                    "MultipleInstructionsDisallowed", f"Multiple {keyword} instructions should "
                    "not be used in the same stage because only the last one will be used",
                    last[keyword]))
            last[keyword] = ins.line
        if isinstance(ins, Cmd | Entrypoint) and not ins.command.exec_form:
            found.append(CheckWarning("JSONArgsRecommended", f"JSON arguments recommended for "
                                      f"{keyword} to prevent unintended behavior related to OS "
                                      "signals", ins.line))
        if isinstance(ins, Env | Label) and raw is not None and raw.rest and \
                "=" not in raw.rest.split(None, 1)[0]:
            found.append(CheckWarning("LegacyKeyValueFormat", f'"{keyword} key=value" should be '
                                      f'used instead of legacy "{keyword} key value" format',
                                      ins.line))
        names = [d.name for d in ins.args] if isinstance(ins, Arg) else \
            [p.key for p in ins.pairs] if isinstance(ins, Env) else []
        for name in names:
            if _SECRET.search(name) and not _NOT_SECRET.search(name):
                found.append(CheckWarning("SecretsUsedInArgOrEnv", "Do not use ARG or ENV "
                                          f'instructions for sensitive data ({keyword} '
                                          f'"{name}")', ins.line))
        if isinstance(ins, Workdir):
            if ins.path.startswith(("/", "$")):
                absolute_workdir = True
            elif not absolute_workdir:
                found.append(CheckWarning("WorkdirRelativePath", f'Relative workdir "{ins.path}" '
                                          "can have unexpected results if the base image "
                                          "changes", ins.line))
        if isinstance(ins, Expose):
            for port in ins.ports:
                proto = port.partition("/")[2]
                if proto and proto != proto.lower():
                    found.append(CheckWarning("ExposeProtoCasing", f"Defined protocol '{port}' "
                                              "in EXPOSE instruction should be lowercase",
                                              ins.line))
        if isinstance(ins, Copy | Add) and ignore is not None and ignore.patterns and \
                not (isinstance(ins, Copy) and ins.from_):
            verb = "Copy" if isinstance(ins, Copy) else "Add"
            for source in ins.sources:
                if "$" in source or source.startswith(("http://", "https://", "<<")):
                    continue
                if ignore.excluded(source.lstrip("/")):
                    found.append(CheckWarning("CopyIgnoredFile", f'Attempting to {verb} file '
                                              f'"{source}" that is excluded by .dockerignore',
                                              ins.line))
    return found


def report(warnings: list[CheckWarning], text: str, file: str) -> str:
    """``--check``'s listing: a header, then each warning with its rule's page and the lines
    around it, as buildx prints them."""
    if not warnings:
        return "Check complete, no warnings found.\n"
    lines = text.replace("\r\n", "\n").split("\n")
    count = len(warnings)
    out = [f"Check complete, {count} warning{'s' if count > 1 else ''} "
           f"{'have' if count > 1 else 'has'} been found!", ""]
    for w in warnings:
        out += [f"WARNING: {w.rule} - {w.url}", w.message, f"{file}:{w.line}",
                "-" * 20]
        for n in range(max(1, w.line - 2), min(len(lines), w.line + 2) + 1):
            marker = ">>>" if n == w.line else "   "
            out.append(f" {n:>3} | {marker} {lines[n - 1]}")
        out += ["-" * 20, ""]
    return "\n".join(out) + "\n"


def summary(warnings: list[CheckWarning]) -> str:
    """The lines a build prints after it ran: how many warnings and each in one line."""
    count = len(warnings)
    head = f" {count} warning{'s' if count > 1 else ''} found:"
    return "\n".join([head, *(f" - {w.rule}: {w.message} (line {w.line})" for w in warnings)])
