"""The build graph in a readable form (``pybuild build --print-graph``, golden tests).

Ops are listed inputs first, each named by the first 12 hex digits of its digest; then each
stage lists its steps, a filesystem step pointing at the op it made.
"""

from __future__ import annotations

import json

from builder.frontend.convert import platform_string
from builder.graph.mounts import BindSpec, CacheMount, RunMount, SecretSpec, SshSpec, TmpfsSpec
from builder.graph.ops import (
    ContextSource,
    CopyOp,
    Exec,
    ExecMount,
    ImageSource,
    MergeOp,
    MkdirOp,
    Op,
    ScratchSource,
)
from builder.graph.plan import BuildGraph, StageGraph


def short(op: Op) -> str:
    """The op's name in the listing."""
    return op.digest.removeprefix("sha256:")[:12]


def _q(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _mount(m: ExecMount) -> str:
    spec: RunMount = m.spec
    src = "" if m.source is None else (
        " from context" if isinstance(m.source, ContextSource) else f" from {short(m.source)}")
    if isinstance(spec, BindSpec):
        return f"bind {spec.target} source={spec.source}{src}" + (
            " rw" if spec.readwrite else " ro")
    if isinstance(spec, CacheMount):
        return (f"cache {spec.target} id={spec.id} sharing={spec.sharing} "
                f"source={spec.source}{src} mode={spec.mode:o} uid={spec.uid} gid={spec.gid}"
                + (" ro" if spec.readonly else ""))
    if isinstance(spec, TmpfsSpec):
        return f"tmpfs {spec.target}" + (f" size={spec.size}" if spec.size else "")
    if isinstance(spec, SshSpec):
        required = "" if spec.required is None else f" required={str(spec.required).lower()}"
        return (f"ssh id={spec.id} target={spec.target or '(default)'}{required} "
                f"mode={spec.mode:o} uid={spec.uid} gid={spec.gid}")
    assert isinstance(spec, SecretSpec)
    where = "".join(f" {k}={v}" for k, v in (("target", spec.target), ("env", spec.env)) if v)
    return (f"secret id={spec.id}{where} required={str(spec.required).lower()} "
            f"mode={spec.mode:o} uid={spec.uid} gid={spec.gid}")


def render_op(op: Op) -> list[str]:
    """The lines describing one op."""
    head = short(op)
    if isinstance(op, ScratchSource):
        return [f"{head} scratch {platform_string(op.platform)}"]
    if isinstance(op, ImageSource):
        return [f"{head} image {op.ref} {platform_string(op.platform)}"]
    if isinstance(op, ContextSource):
        return [f"{head} context"]
    if isinstance(op, Exec):
        lines = [f"{head} exec on {short(op.base)}: {_q(list(op.args))}",
                 f"    cwd={op.cwd} user={op.user or '-'} network={op.network}"
                 + (f" security={op.security}" if op.security != "sandbox" else ""),
                 f"    env {_q(list(op.env))}"]
        lines += [f"    mount {_mount(m)}" for m in op.mounts]
        lines += [f"    script {s.target} ({len(s.content)} bytes)" for s in op.scripts]
        return lines
    if isinstance(op, CopyOp):
        spec = op.spec
        src = "context" if isinstance(op.source, ContextSource) else short(op.source)
        kind = "add" if spec.add else "copy"
        lines = [f"{head} {kind} on {short(op.base)} from {src}: "
                 f"{_q(list(spec.sources))} -> {spec.dest}"]
        flags = [f"workdir={spec.workdir}"]
        for name in ("chown", "chmod", "checksum"):
            if getattr(spec, name):
                flags.append(f"{name}={getattr(spec, name)}")
        if spec.parents:
            flags.append("parents")
        if spec.exclude:
            flags.append("exclude=" + ",".join(spec.exclude))
        if spec.heredocs:
            flags.append("heredocs=" + ",".join(name for name, _ in spec.heredocs))
        if not op.cacheable:
            flags.append("uncached")
        return [*lines, "    " + " ".join(flags)]
    if isinstance(op, MergeOp):
        return [f"{head} merge on {short(op.base)}: {short(op.upper)}"]
    assert isinstance(op, MkdirOp)
    return [f"{head} mkdir on {short(op.base)}: {op.path} user={op.user or '-'}"]


def _stage(stage: StageGraph, target: bool) -> list[str]:
    name = f"stage {stage.index} {stage.display} ({platform_string(stage.platform)})"
    lines = [name + (" [target]" if target else ""),
             f"  {stage.from_line}: {stage.base_title} -> {short(stage.base)}"]
    for step in stage.steps:
        made = f" -> {short(step.op)}" if step.op is not None else ""
        text = step.created_by.replace("\n", "\\n")
        lines.append(f"  {step.line}: {text}{made}")
    config = stage.config.image_config()
    fields = {k: v for k, v in (
        ("Env", config.env), ("User", config.user), ("WorkingDir", config.working_dir),
        ("Entrypoint", config.entrypoint), ("Cmd", config.cmd), ("Shell", config.shell),
        ("ExposedPorts", sorted(config.exposed_ports or ())),
        ("Volumes", sorted(config.volumes or ())), ("Labels", config.labels),
        ("StopSignal", config.stop_signal), ("OnBuild", config.on_build)) if v}
    lines += [f"  config {k}={_q(list(v) if isinstance(v, tuple) else v)}"
              for k, v in fields.items()]
    return lines


def render(graph: BuildGraph) -> str:
    """The whole graph as text."""
    lines = ["ops:"]
    for op in graph.ops():
        lines += ["  " + line for line in render_op(op)]
    for index, stage in graph.stages.items():
        lines += _stage(stage, index == graph.target)
    return "\n".join(lines) + "\n"
