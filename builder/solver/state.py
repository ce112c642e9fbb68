"""The working state of one stage while its instructions run, and its image config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from builder.frontend.convert import PROXY_ARGS, StagePlan
from layerstore.layerblob import Layer
from layerstore.oci import Healthcheck, History, Image, ImageConfig, Platform

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ("/bin/sh", "-c")


class StageState:
    """Everything a stage accumulates: config fields, ARG values, layers, history, and the
    committed snapshot (``chain``) holding its filesystem."""

    def __init__(self, plan: StagePlan, base: Image | None, layers: list[Layer],
                 chain: str | None) -> None:
        self.plan = plan
        self.platform: Platform = plan.platform
        config = (base.config if base is not None else None) or ImageConfig()
        if base is None:
            config = ImageConfig(env=(f"PATH={DEFAULT_PATH}",), working_dir="/")
        self.env: dict[str, str] = {}
        for item in config.env or ():
            key, _, value = item.partition("=")
            self.env[key] = value
        self.args: dict[str, str | None] = {}
        self.user = config.user or ""
        self.workdir = config.working_dir or ""
        self.cmd = config.cmd
        self.cmd_set = False
        self.entrypoint = config.entrypoint
        self.exposed: dict[str, object] = dict(config.exposed_ports or {})
        self.volumes: dict[str, object] = dict(config.volumes or {})
        self.labels: dict[str, str] = dict(config.labels or {})
        self.stop_signal = config.stop_signal
        self.healthcheck: Healthcheck | None = config.healthcheck
        self.on_build: list[str] = []
        self.inherited_triggers: tuple[str, ...] = tuple(config.on_build or ())
        self.shell: tuple[str, ...] = config.shell or DEFAULT_SHELL
        self.custom_shell = config.shell
        self.author = base.author if base is not None else None
        self.base = base
        self.base_config = config
        self.layers: list[Layer] = list(layers)
        self.history: list[History] = list(base.history or ()) if base is not None else []
        self.inherited_history = len(self.history)
        self.chain = chain
        self.proxy: dict[str, str] = {}
        self.cache_key = ""

    def arg_values(self) -> dict[str, str]:
        """Declared ARGs that have a value."""
        return {k: v for k, v in self.args.items() if v is not None}

    def expansion_env(self) -> dict[str, str]:
        """What ``$VAR`` means in this stage's instructions: ARG values, overridden by ENV."""
        return {**self.arg_values(), **self.env}

    def env_list(self) -> tuple[str, ...]:
        """The config's Env list."""
        return tuple(f"{k}={v}" for k, v in self.env.items())

    def run_env(self) -> tuple[str, ...]:
        """The environment of a RUN: Env, then ARG and proxy values that ENV does not set."""
        out = dict(self.env)
        for k, v in {**self.proxy, **self.arg_values()}.items():
            out.setdefault(k, v)
        if "PATH" not in out:
            out["PATH"] = DEFAULT_PATH
        return tuple(f"{k}={v}" for k, v in out.items())

    def history_args(self) -> list[str]:
        """``NAME=value`` of the declared ARGs, as BuildKit lists them in RUN history."""
        return [f"{k}={v}" for k, v in self.args.items()
                if v is not None and k not in PROXY_ARGS]

    def add_history(self, created_by: str, created: str, *, empty: bool,
                    comment: str | None = None) -> None:
        """Record one instruction."""
        self.history.append(History(created=created, created_by=created_by, comment=comment,
                                    empty_layer=True if empty else None))

    def to_image(self, created: str) -> Image:
        """The image config this stage describes now."""
        config = replace(
            self.base_config,
            user=self.user or None,
            env=self.env_list() or None,
            entrypoint=self.entrypoint,
            cmd=self.cmd,
            working_dir=self.workdir or None,
            exposed_ports=dict(sorted(self.exposed.items())) or None,
            volumes=dict(sorted(self.volumes.items())) or None,
            labels=dict(sorted(self.labels.items())) or None,
            stop_signal=self.stop_signal,
            healthcheck=self.healthcheck,
            on_build=tuple(self.on_build) or None,
            shell=self.custom_shell,
            args_escaped=None,
        )
        base = self.base
        return Image(
            architecture=self.platform.architecture, os=self.platform.os,
            variant=self.platform.variant, created=created, author=self.author,
            os_version=base.os_version if base else None,
            config=config, history=tuple(self.history),
            extra={k: v for k, v in base.extra.items()
                   if not k.startswith("pybuild.buildcache")} if base else {},
        )


def merge_proxy(state: StageState, build_args: Mapping[str, str]) -> None:
    """Proxy build args reach RUN steps without an ARG declaration."""
    state.proxy = {k: v for k, v in build_args.items() if k in PROXY_ARGS}
