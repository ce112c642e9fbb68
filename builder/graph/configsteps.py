"""Config-only instructions: each turns a :class:`StageConfig` into the next one and gives
its history text (``created_by``, as BuildKit writes it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from builder.errors import DockerfileError
from builder.frontend.convert import expand
from builder.frontend.instructions import (
    Arg,
    Cmd,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    Label,
    Maintainer,
    Onbuild,
    Shell,
    Stopsignal,
    User,
    Volume,
)
from builder.frontend.words import process_words
from builder.graph.config import StageConfig, go_list, put
from layerstore.oci import Healthcheck as HealthConfig


@dataclass(frozen=True)
class Scope:
    """What expanding a stage's words needs besides its config."""

    file: str
    escape: str
    build_args: Mapping[str, str]
    global_args: Mapping[str, str]

    def expand(self, config: StageConfig, word: str, line: int, what: str) -> str:
        """``word`` with the stage's ARG and ENV values substituted."""
        return expand(word, config.expansion_env(), self.escape, line, self.file, what)


Result = tuple[StageConfig, str]


def _env(s: Scope, c: StageConfig, ins: Env) -> Result:
    scope = c.expansion_env()
    pairs = [(expand(p.key, scope, s.escape, ins.line, s.file, "ENV"),
              expand(p.value, scope, s.escape, ins.line, s.file, "ENV")) for p in ins.pairs]
    env = c.env
    for key, value in pairs:
        if not key:
            raise DockerfileError("ENV names can not be blank", ins.line, s.file)
        env = put(env, key, value)
    return replace(c, env=env), "ENV " + " ".join(f"{k}={v}" for k, v in pairs)


def _arg(s: Scope, c: StageConfig, ins: Arg) -> Result:
    shown = []
    for d in ins.args:
        value: str | None
        if d.name in s.build_args:
            value = s.build_args[d.name]
        elif d.default is not None:
            value = s.expand(c, d.default, ins.line, "ARG")
        else:
            value = s.global_args.get(d.name)
        args = dict(c.args)
        args[d.name] = value
        c = replace(c, args=tuple(args.items()))
        shown.append(d.name if value is None else f"{d.name}={value}")
    return c, "ARG " + " ".join(shown)


def _label(s: Scope, c: StageConfig, ins: Label) -> Result:
    pairs = [(s.expand(c, p.key, ins.line, "LABEL"), s.expand(c, p.value, ins.line, "LABEL"))
             for p in ins.pairs]
    labels = c.labels
    for key, value in pairs:
        labels = put(labels, key, value)
    return replace(c, labels=labels), "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)


def ports(word: str, line: int, file: str) -> list[str]:
    """``port[-port][/proto]`` as ``port/proto`` items."""
    number, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    low, dash, high = number.partition("-")
    try:
        first, last = int(low), int(high) if dash else int(low)
    except ValueError:
        raise DockerfileError(f"invalid containerPort: {word}", line, file) from None
    if proto not in ("tcp", "udp", "sctp") or not 0 < first <= last <= 65535:
        raise DockerfileError(f"invalid containerPort: {word}", line, file)
    return [f"{p}/{proto}" for p in range(first, last + 1)]


def _expose(s: Scope, c: StageConfig, ins: Expose) -> Result:
    added: list[str] = []
    for raw in ins.ports:
        for word in process_words(raw, c.expansion_env(), s.escape):
            added.extend(ports(word, ins.line, s.file))
    exposed = tuple(dict.fromkeys((*c.exposed, *added)))
    return replace(c, exposed=exposed), \
        "EXPOSE map[" + " ".join(f"{p}:{{}}" for p in sorted(added)) + "]"


def _volume(s: Scope, c: StageConfig, ins: Volume) -> Result:
    paths = [s.expand(c, p, ins.line, "VOLUME") for p in ins.paths]
    for path in paths:
        if not path.strip():
            raise DockerfileError("VOLUME specified can not be an empty string", ins.line,
                                  s.file)
    volumes = tuple(dict.fromkeys((*c.volumes, *paths)))
    return replace(c, volumes=volumes), "VOLUME " + go_list(paths).replace('"', "")


def _user(s: Scope, c: StageConfig, ins: User) -> Result:
    user = s.expand(c, ins.user, ins.line, "USER")
    return replace(c, user=user), f"USER {user}"


def _stopsignal(s: Scope, c: StageConfig, ins: Stopsignal) -> Result:
    signal = s.expand(c, ins.signal, ins.line, "STOPSIGNAL")
    return replace(c, stop_signal=signal), f"STOPSIGNAL {signal}"


def _shell(s: Scope, c: StageConfig, ins: Shell) -> Result:
    return replace(c, shell=ins.shell, custom_shell=ins.shell), \
        "SHELL " + go_list(ins.shell).replace('"', "")


def _healthcheck(s: Scope, c: StageConfig, ins: Healthcheck) -> Result:
    check = HealthConfig(
        test=ins.test, interval=ins.interval or None, timeout=ins.timeout or None,
        start_period=ins.start_period or None, start_interval=ins.start_interval or None,
        retries=ins.retries or None)
    return replace(c, healthcheck=check), "HEALTHCHECK " + " ".join(ins.test)


def _cmd(s: Scope, c: StageConfig, ins: Cmd) -> Result:
    cmd = c.command(ins.command.exec_form, ins.command.args)
    return replace(c, cmd=cmd, cmd_set=True), "CMD " + go_list(cmd)


def _entrypoint(s: Scope, c: StageConfig, ins: Entrypoint) -> Result:
    entrypoint = c.command(ins.command.exec_form, ins.command.args)
    return replace(c, entrypoint=entrypoint, cmd=c.cmd if c.cmd_set else None), \
        "ENTRYPOINT " + go_list(entrypoint)


def _onbuild(s: Scope, c: StageConfig, ins: Onbuild) -> Result:
    return replace(c, on_build=(*c.on_build, ins.expression)), f"ONBUILD {ins.expression}"


def _maintainer(s: Scope, c: StageConfig, ins: Maintainer) -> Result:
    author = s.expand(c, ins.name, ins.line, "MAINTAINER")
    return replace(c, author=author), f"MAINTAINER {author}"


_Handler = Callable[[Scope, StageConfig, Any], Result]
#: The config-only instructions, each with the function that applies it.
CONFIG_STEPS: dict[type[Instruction], _Handler] = {
    Env: _env, Arg: _arg, Label: _label, Expose: _expose, Volume: _volume, User: _user,
    Stopsignal: _stopsignal, Shell: _shell, Healthcheck: _healthcheck, Cmd: _cmd,
    Entrypoint: _entrypoint, Onbuild: _onbuild, Maintainer: _maintainer,
}
