"""``-c`` / ``--change`` of ``commit`` and ``import``: Dockerfile instructions applied to an
image config, as docker applies them.

Each change is one instruction in Dockerfile syntax, parsed by the Dockerfile frontend and
applied as a build applies it (``$VAR`` refers to the config's environment). Only the
instructions docker accepts there are allowed: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD,
USER, VOLUME and WORKDIR.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import replace

from builder.errors import BuildError, DockerfileError
from builder.frontend.instructions import Workdir, parse_dockerfile
from builder.graph.config import StageConfig
from builder.graph.configsteps import CONFIG_STEPS, Scope
from layerstore.oci import Image, ImageConfig

__all__ = ["ALLOWED", "apply_changes"]

#: The instructions a change may be (docker's list for commit and import).
ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "USER", "VOLUME",
           "WORKDIR")


def apply_changes(config: ImageConfig, changes: Sequence[str]) -> ImageConfig:
    """``config`` with every change applied in order; BuildError naming the change that is
    not valid."""
    if not changes:
        return config
    stage = StageConfig.start(Image(config=config), {})
    scope = Scope(file="--change", escape="\\", build_args={}, global_args={})
    for change in changes:
        stage = _apply(scope, stage, change)
    new = stage.image_config()
    triggers = (*(config.on_build or ()), *stage.on_build)
    return replace(new, on_build=triggers or None, args_escaped=config.args_escaped)


def _apply(scope: Scope, stage: StageConfig, change: str) -> StageConfig:
    word = change.strip().split(None, 1)[0] if change.strip() else ""
    if word.upper() not in ALLOWED:
        raise BuildError(f"--change {change!r}: {word.lower() or 'an empty line'} is not a "
                         f"valid change command (use one of {', '.join(ALLOWED)})")
    try:
        parsed = parse_dockerfile(f"FROM scratch\n{change.strip()}\n", "--change")
        instructions = parsed.stages[0].instructions
        if len(instructions) != 1:
            raise BuildError(f"--change {change!r}: expected one instruction")
        ins = instructions[0]
        if isinstance(ins, Workdir):
            path = scope.expand(stage, ins.path, ins.line, "WORKDIR")
            return replace(stage, workdir=posixpath.join(stage.workdir or "/", path))
        handler = CONFIG_STEPS[type(ins)]
        stage, _ = handler(scope, stage, ins)
        return stage
    except DockerfileError as exc:
        raise BuildError(f"--change {change!r}: {exc.message}") from None
