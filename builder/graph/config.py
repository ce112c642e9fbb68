"""The image config of a stage as its instructions change it: one frozen value a step.

:class:`StageConfig` starts from the base image's config (:meth:`StageConfig.start`); each
config instruction makes a new value (``replace``) and :meth:`StageConfig.image_config` gives
the config an image of the stage carries. ARG values and the proxy build arguments live here
too: they are what ``$VAR`` means in the stage and what a RUN's environment holds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from builder.frontend.convert import PROXY_ARGS
from layerstore.oci import Healthcheck, Image, ImageConfig

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")

Pairs = tuple[tuple[str, str], ...]


def put(pairs: Pairs, key: str, value: str) -> Pairs:
    """``pairs`` with ``key`` set (a key already there keeps its place, like a dict)."""
    out = dict(pairs)
    out[key] = value
    return tuple(out.items())


def go_list(args: tuple[str, ...] | list[str]) -> str:
    """A list as Go's ``%v`` of a quoted slice prints it, the way BuildKit's history does."""
    return "[" + " ".join(json.dumps(a) for a in args) + "]"


@dataclass(frozen=True)
class StageConfig:
    """What a stage's instructions have set so far.

    ``base`` is the config it started from (fields no instruction sets are kept from it);
    ``args`` are the declared ARGs in declaration order (None: declared without a value);
    ``shell`` is the shell of shell-form commands and ``custom_shell`` what SHELL set (or
    the base had); ``triggers`` are the base's ONBUILD triggers, ``on_build`` the stage's own.
    """

    base: ImageConfig
    env: Pairs = ()
    args: tuple[tuple[str, str | None], ...] = ()
    proxy: Pairs = ()
    user: str = ""
    workdir: str = ""
    cmd: tuple[str, ...] | None = None
    cmd_set: bool = False
    entrypoint: tuple[str, ...] | None = None
    exposed: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Pairs = ()
    stop_signal: str | None = None
    healthcheck: Healthcheck | None = None
    on_build: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    shell: tuple[str, ...] = DEFAULT_SHELL
    custom_shell: tuple[str, ...] | None = None
    author: str | None = None

    @classmethod
    def start(cls, base: Image | None, build_args: Mapping[str, str]) -> StageConfig:
        """The config of a stage built on ``base`` (None: scratch) before any instruction."""
        config = (base.config if base is not None else None) or ImageConfig()
        if base is None:
            config = ImageConfig(env=(f"PATH={DEFAULT_PATH}",), working_dir="/")
        env = tuple((k, v) for k, _, v in (item.partition("=") for item in config.env or ()))
        return cls(
            base=config, env=tuple(dict(env).items()), user=config.user or "",
            workdir=config.working_dir or "", cmd=config.cmd, entrypoint=config.entrypoint,
            exposed=tuple(config.exposed_ports or {}), volumes=tuple(config.volumes or {}),
            labels=tuple((config.labels or {}).items()), stop_signal=config.stop_signal,
            healthcheck=config.healthcheck, triggers=tuple(config.on_build or ()),
            shell=config.shell or DEFAULT_SHELL, custom_shell=config.shell,
            author=base.author if base is not None else None,
            proxy=tuple((k, v) for k, v in build_args.items() if k in PROXY_ARGS))

    def arg_values(self) -> dict[str, str]:
        """Declared ARGs that have a value."""
        return {k: v for k, v in self.args if v is not None}

    def expansion_env(self) -> dict[str, str]:
        """What ``$VAR`` means in the stage's instructions: ARG values, overridden by ENV."""
        return {**self.arg_values(), **dict(self.env)}

    def run_env(self) -> tuple[str, ...]:
        """The environment of a RUN: Env, then ARG and proxy values that ENV does not set."""
        out = dict(self.env)
        for k, v in {**dict(self.proxy), **self.arg_values()}.items():
            out.setdefault(k, v)
        if "PATH" not in out:
            out["PATH"] = DEFAULT_PATH
        return tuple(f"{k}={v}" for k, v in out.items())

    def history_args(self) -> list[str]:
        """``NAME=value`` of the declared ARGs, as BuildKit lists them in RUN history."""
        return [f"{k}={v}" for k, v in self.args if v is not None and k not in PROXY_ARGS]

    def command(self, exec_form: bool, args: tuple[str, ...]) -> tuple[str, ...]:
        """The argv of a CMD/ENTRYPOINT/RUN: exec form as is, shell form through the shell."""
        return args if exec_form else (*self.shell, args[0])

    def image_config(self) -> ImageConfig:
        """The config an image of this stage carries."""
        return replace(
            self.base,
            user=self.user or None,
            env=tuple(f"{k}={v}" for k, v in self.env) or None,
            entrypoint=self.entrypoint,
            cmd=self.cmd,
            working_dir=self.workdir or None,
            exposed_ports={p: {} for p in sorted(self.exposed)} or None,
            volumes={v: {} for v in sorted(self.volumes)} or None,
            labels=dict(sorted(self.labels)) or None,
            stop_signal=self.stop_signal,
            healthcheck=self.healthcheck,
            on_build=self.on_build or None,
            shell=self.custom_shell,
            args_escaped=None,
        )
