"""Typed Dockerfile instructions and :func:`parse_dockerfile`.

Values keep their unexpanded text; ARG/ENV expansion happens when stages are converted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from builder.errors import DockerfileError
from builder.frontend.parser import (
    Directives,
    Flag,
    Heredoc,
    RawInstruction,
    parse_json_array,
    split_flags,
    split_lines,
    split_words,
)

__all__ = [
    "Add", "Arg", "ArgDef", "Cmd", "Command", "Copy", "Dockerfile", "Entrypoint", "Env",
    "Expose", "From", "Healthcheck", "Instruction", "KeyValue", "Label", "Maintainer",
    "Onbuild", "Run", "Shell", "Stage", "Stopsignal", "User", "Volume", "Workdir",
    "parse_dockerfile", "parse_duration",
]  # fmt: skip


@dataclass(frozen=True)
class Command:
    """A command in exec form (JSON array) or shell form (one string in ``args``)."""

    exec_form: bool
    args: tuple[str, ...]


@dataclass(frozen=True)
class KeyValue:
    """A ``key=value`` pair as written (quotes kept, not expanded)."""

    key: str
    value: str


@dataclass(frozen=True)
class ArgDef:
    """One ``name[=default]`` of an ARG instruction."""

    name: str
    default: str | None


@dataclass(frozen=True)
class Instruction:
    """Base of every instruction; ``line`` is where it starts (1-based)."""

    line: int


@dataclass(frozen=True)
class From(Instruction):
    """``FROM [--platform=p] image [AS name]``."""

    image: str
    name: str | None = None
    platform: str | None = None


@dataclass(frozen=True)
class Run(Instruction):
    """``RUN [--mount=…] [--network=…] [--security=…] command``."""

    command: Command
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[str, ...] = ()
    network: str | None = None
    security: str | None = None


@dataclass(frozen=True)
class Cmd(Instruction):
    """``CMD command``."""

    command: Command


@dataclass(frozen=True)
class Entrypoint(Instruction):
    """``ENTRYPOINT command``."""

    command: Command


@dataclass(frozen=True)
class Env(Instruction):
    """``ENV k=v …`` or the legacy ``ENV k v``."""

    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True)
class Arg(Instruction):
    """``ARG name[=default] …``."""

    args: tuple[ArgDef, ...]


@dataclass(frozen=True)
class Label(Instruction):
    """``LABEL k=v …``."""

    pairs: tuple[KeyValue, ...]


@dataclass(frozen=True)
class Expose(Instruction):
    """``EXPOSE port[/proto] …`` (ranges ``8000-8010/udp`` allowed)."""

    ports: tuple[str, ...]


@dataclass(frozen=True)
class Volume(Instruction):
    """``VOLUME ["/a", "/b"]`` or ``VOLUME /a /b``."""

    paths: tuple[str, ...]


@dataclass(frozen=True)
class User(Instruction):
    """``USER user[:group]``."""

    user: str


@dataclass(frozen=True)
class Workdir(Instruction):
    """``WORKDIR path``."""

    path: str


@dataclass(frozen=True)
class Shell(Instruction):
    """``SHELL ["exe", "arg"]`` (JSON form only)."""

    shell: tuple[str, ...]


@dataclass(frozen=True)
class Stopsignal(Instruction):
    """``STOPSIGNAL signal``."""

    signal: str


@dataclass(frozen=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` or ``HEALTHCHECK [options] CMD command``; durations in nanoseconds.

    ``test`` is ``("NONE",)``, ``("CMD", arg, …)`` or ``("CMD-SHELL", command)``.
    """

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Onbuild(Instruction):
    """``ONBUILD instruction``; ``expression`` is the trigger text, already validated."""

    expression: str


@dataclass(frozen=True)
class Maintainer(Instruction):
    """``MAINTAINER name`` (deprecated)."""

    name: str


@dataclass(frozen=True)
class Copy(Instruction):
    """``COPY [flags] src… dest``."""

    sources: tuple[str, ...]
    dest: str
    heredocs: tuple[Heredoc, ...] = ()
    from_: str | None = None
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    parents: bool = False
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Add(Instruction):
    """``ADD [flags] src… dest``."""

    sources: tuple[str, ...]
    dest: str
    heredocs: tuple[Heredoc, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    exclude: tuple[str, ...] = ()
    checksum: str | None = None
    keep_git_dir: bool = False


@dataclass(frozen=True)
class Stage:
    """A build stage: its FROM and the instructions after it."""

    from_: From
    instructions: tuple[Instruction, ...] = ()

    @property
    def name(self) -> str | None:
        """The stage name given with ``AS``, if any."""
        return self.from_.name


@dataclass(frozen=True)
class Dockerfile:
    """A parsed Dockerfile: directives, the ARGs before the first FROM, and the stages."""

    directives: Directives
    global_args: tuple[Arg, ...] = ()
    stages: tuple[Stage, ...] = ()

    @property
    def instructions(self) -> tuple[Instruction, ...]:
        """Every instruction in file order."""
        out: list[Instruction] = list(self.global_args)
        for stage in self.stages:
            out.append(stage.from_)
            out.extend(stage.instructions)
        return tuple(out)


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9,
          "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip


def parse_duration(text: str) -> int:
    """Parse a Go duration (``1m30s``, ``500ms``, ``1.5h``) into nanoseconds."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    return sign * round(total)


class _Context:
    """Per-instruction helpers that raise errors located at the instruction's line."""

    def __init__(self, raw: RawInstruction, file: str, allowed: dict[str, str]) -> None:
        self.raw = raw
        self.file = file
        self.name = raw.keyword.upper()
        flags, self.rest = split_flags(raw.rest, raw.escape)
        self.flags: dict[str, list[Flag]] = {}
        for flag in flags:
            kind = allowed.get(flag.name)
            if kind is None:
                raise self.error(f"unknown flag: --{flag.name}")
            if kind == "str" and flag.value is None:
                raise self.error(f"missing a value on flag: --{flag.name}")
            if kind != "list" and flag.name in self.flags:
                raise self.error(f"duplicate flag specified: --{flag.name}")
            self.flags.setdefault(flag.name, []).append(flag)

    def error(self, message: str) -> DockerfileError:
        return DockerfileError(message, self.raw.line, self.file)

    def str_flag(self, name: str) -> str | None:
        flags = self.flags.get(name)
        return flags[-1].value if flags else None

    def list_flag(self, name: str) -> tuple[str, ...]:
        return tuple(f.value or "" for f in self.flags.get(name, []))

    def bool_flag(self, name: str) -> bool:
        flags = self.flags.get(name)
        if not flags:
            return False
        value = (flags[-1].value or "true").lower()
        if value not in ("true", "false", "1", "0"):
            raise self.error(f"expecting boolean value for flag --{name}, not: {value}")
        return value in ("true", "1")

    def require(self) -> str:
        if not self.rest.strip():
            raise self.error(f"{self.name} requires at least one argument")
        return self.rest.strip()

    def json_array(self, text: str) -> list[str] | None:
        try:
            return parse_json_array(text)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def command(self) -> Command:
        text = self.require()
        args = self.json_array(text)
        if args is not None:
            return Command(True, tuple(args))
        return Command(False, (text,))

    def word_list(self) -> list[str]:
        """JSON array, or else whitespace-separated words (quotes are not special here)."""
        text = self.require()
        args = self.json_array(text)
        return args if args is not None else text.split()

    def pairs(self) -> tuple[KeyValue, ...]:
        words = split_words(self.require(), self.raw.escape)
        if "=" not in words[0]:
            key, value = ([*self.rest.split(None, 1), ""])[:2]
            value = value.strip()
            if not value:
                raise self.error(f"{self.name} must have two arguments")
            return (KeyValue(key, value),)
        out = []
        for word in words:
            key, eq, value = word.partition("=")
            if not eq:
                raise self.error(
                    f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
                )
            if not key:
                raise self.error(f"{self.name} names can not be blank")
            out.append(KeyValue(key, value))
        return tuple(out)


_Builder = Callable[[_Context], Instruction]
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")


def _from(c: _Context) -> From:
    words = c.require().split()
    if len(words) == 3 and words[1].lower() == "as":
        name = words[2].lower()
        if not _STAGE_NAME.match(name):
            raise c.error(f"invalid name for build stage: {words[2]!r}")
        return From(c.raw.line, words[0], name, c.str_flag("platform"))
    if len(words) != 1:
        raise c.error("FROM requires either one or three arguments")
    return From(c.raw.line, words[0], None, c.str_flag("platform"))


def _run(c: _Context) -> Run:
    return Run(c.raw.line, c.command(), c.raw.heredocs, c.list_flag("mount"),
               c.str_flag("network"), c.str_flag("security"))  # fmt: skip


def _arg(c: _Context) -> Arg:
    out = []
    for word in split_words(c.require(), c.raw.escape):
        name, eq, default = word.partition("=")
        if not name:
            raise c.error("ARG names can not be blank")
        out.append(ArgDef(name, default if eq else None))
    return Arg(c.raw.line, tuple(out))


_PORT = re.compile(r"^\d+(-\d+)?(/(tcp|udp|sctp))?$", re.IGNORECASE)


def _expose(c: _Context) -> Expose:
    ports = c.require().split()
    for port in ports:
        if "$" not in port and not _PORT.match(port):
            raise c.error(f"invalid containerPort: {port}")
    return Expose(c.raw.line, tuple(ports))


def _shell(c: _Context) -> Shell:
    args = c.json_array(c.require())
    if not args:
        raise c.error("SHELL requires the arguments to be in JSON form")
    return Shell(c.raw.line, tuple(args))


def _duration_flag(c: _Context, name: str) -> int:
    value = c.str_flag(name)
    if value is None:
        return 0
    try:
        nanos = parse_duration(value)
    except ValueError as exc:
        raise c.error(f"--{name}: {exc}") from None
    if nanos < 0:
        raise c.error(f"Interval --{name} cannot be negative")
    if 0 < nanos < 10**6:
        raise c.error(f"Interval --{name} cannot be less than 1ms")
    return nanos


def _healthcheck(c: _Context) -> Healthcheck:
    kind, _, rest = c.require().partition(" ")
    if kind.upper() == "NONE":
        if rest.strip() or c.flags:
            raise c.error("HEALTHCHECK NONE takes no arguments")
        return Healthcheck(c.raw.line, ("NONE",))
    if kind.upper() != "CMD":
        raise c.error(f"Unknown type {kind!r} in HEALTHCHECK (try CMD)")
    if not rest.strip():
        raise c.error("Missing command after HEALTHCHECK CMD")
    args = c.json_array(rest)
    test = ("CMD", *args) if args is not None else ("CMD-SHELL", rest.strip())
    retries_text = c.str_flag("retries") or "0"
    try:
        retries = int(retries_text)
    except ValueError:
        raise c.error(f"--retries: invalid integer {retries_text!r}") from None
    if retries < 0:
        raise c.error(f"--retries cannot be negative ({retries})")
    return Healthcheck(c.raw.line, test, _duration_flag(c, "interval"),
                       _duration_flag(c, "timeout"), _duration_flag(c, "start-period"),
                       _duration_flag(c, "start-interval"), retries)  # fmt: skip


def _sources_dest(c: _Context) -> tuple[tuple[str, ...], str]:
    words = c.word_list()
    if len(words) < 2:
        raise c.error(
            f"{c.name} requires at least two arguments, but only one was provided. "
            "Destination could not be determined."
        )
    return tuple(words[:-1]), words[-1]


def _copy(c: _Context) -> Copy:
    sources, dest = _sources_dest(c)
    return Copy(c.raw.line, sources, dest, c.raw.heredocs, c.str_flag("from"),
                c.str_flag("chown"), c.str_flag("chmod"), c.bool_flag("link"),
                c.bool_flag("parents"), c.list_flag("exclude"))  # fmt: skip


def _add(c: _Context) -> Add:
    sources, dest = _sources_dest(c)
    return Add(c.raw.line, sources, dest, c.raw.heredocs, c.str_flag("chown"),
               c.str_flag("chmod"), c.bool_flag("link"), c.list_flag("exclude"),
               c.str_flag("checksum"), c.bool_flag("keep-git-dir"))  # fmt: skip


def _onbuild(c: _Context) -> Onbuild:
    text = c.require()
    inner = text.split()[0].lower()
    if inner == "onbuild":
        raise c.error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if inner in ("from", "maintainer"):
        raise c.error(f"{inner.upper()} isn't allowed as an ONBUILD trigger")
    keyword, _, rest = text.partition(" ")
    inner_raw = RawInstruction(
        keyword.lower(), rest.strip(), c.raw.line, text, c.raw.heredocs, c.raw.escape
    )
    _build(inner_raw, c.file)
    return Onbuild(c.raw.line, text)


_STR, _BOOL, _LIST = "str", "bool", "list"
_TABLE: dict[str, tuple[_Builder, dict[str, str]]] = {
    "from": (_from, {"platform": _STR}),
    "run": (_run, {"mount": _LIST, "network": _STR, "security": _STR}),
    "cmd": (lambda c: Cmd(c.raw.line, c.command()), {}),
    "entrypoint": (lambda c: Entrypoint(c.raw.line, c.command()), {}),
    "env": (lambda c: Env(c.raw.line, c.pairs()), {}),
    "arg": (_arg, {}),
    "label": (lambda c: Label(c.raw.line, c.pairs()), {}),
    "expose": (_expose, {}),
    "volume": (lambda c: Volume(c.raw.line, tuple(c.word_list())), {}),
    "user": (lambda c: User(c.raw.line, c.require()), {}),
    "workdir": (lambda c: Workdir(c.raw.line, c.require()), {}),
    "shell": (_shell, {}),
    "stopsignal": (lambda c: Stopsignal(c.raw.line, c.require()), {}),
    "healthcheck": (_healthcheck, {"interval": _STR, "timeout": _STR, "start-period": _STR,
                                   "start-interval": _STR, "retries": _STR}),
    "onbuild": (_onbuild, {}),
    "maintainer": (lambda c: Maintainer(c.raw.line, c.require()), {}),
    "copy": (_copy, {"from": _STR, "chown": _STR, "chmod": _STR, "link": _BOOL,
                     "parents": _BOOL, "exclude": _LIST}),
    "add": (_add, {"chown": _STR, "chmod": _STR, "link": _BOOL, "exclude": _LIST,
                   "checksum": _STR, "keep-git-dir": _BOOL}),
}  # fmt: skip


def _build(raw: RawInstruction, file: str) -> Instruction:
    entry = _TABLE.get(raw.keyword)
    if entry is None:
        raise DockerfileError(f"unknown instruction: {raw.keyword.upper()}", raw.line, file)
    builder, allowed = entry
    return builder(_Context(raw, file, allowed))


def parse_dockerfile(text: str, file: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text`` into directives, global ARGs and stages.

    Raises :class:`~builder.errors.DockerfileError` naming the file and line of any problem.
    """
    directives, raws = split_lines(text, file)
    if not raws:
        raise DockerfileError("file with no instructions", None, file)
    global_args: list[Arg] = []
    stages: list[tuple[From, list[Instruction]]] = []
    for raw in raws:
        instruction = _build(raw, file)
        if isinstance(instruction, From):
            stages.append((instruction, []))
        elif stages:
            stages[-1][1].append(instruction)
        elif isinstance(instruction, Arg):
            global_args.append(instruction)
        else:
            raise DockerfileError("no build stage in current context", raw.line, file)
    if not stages:
        raise DockerfileError("no build stage in current context", None, file)
    return Dockerfile(
        directives,
        tuple(global_args),
        tuple(Stage(f, tuple(instrs)) for f, instrs in stages),
    )
