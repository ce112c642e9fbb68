"""From a parsed Dockerfile to a build plan: ARG scoping, stage references and the stage DAG.

The plan says, for each stage the target needs, what it is based on (an image, ``scratch`` or
an earlier stage) and which other stages it reads from (``COPY --from``,
``RUN --mount=from=``). Instruction values stay unexpanded: ENV and ARG values depend on the
base image's config, which the solver knows when it runs the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from builder.buildcontexts import NamedContext, lookup
from builder.errors import DockerfileError, ExpansionError
from builder.frontend.instructions import Arg, Copy, Dockerfile, Instruction, Run, Stage
from builder.frontend.words import process_word
from builder.graph.mounts import mount_option
from builder.platforms import normalize
from layerstore.oci import Platform

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")


def platform_string(p: Platform) -> str:
    """``os/arch[/variant]``."""
    return "/".join(x for x in (p.os, p.architecture, p.variant) if x)


def parse_platform(text: str) -> Platform:
    """Parse ``os/arch[/variant]`` (``linux/amd64``, ``linux/arm64/v8``)."""
    parts = text.strip().lower().split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"invalid platform {text!r}: expected os/arch[/variant]")
    return Platform(os=parts[0], architecture=parts[1],
                    variant=parts[2] if len(parts) == 3 else None)


def platform_args(build: Platform, target: Platform) -> dict[str, str]:
    """The predefined BUILD* and TARGET* arguments."""
    out: dict[str, str] = {}
    for prefix, p in (("BUILD", build), ("TARGET", target)):
        out[f"{prefix}PLATFORM"] = platform_string(p)
        out[f"{prefix}OS"] = p.os
        out[f"{prefix}ARCH"] = p.architecture
        out[f"{prefix}VARIANT"] = p.variant or ""
    return out


@dataclass(frozen=True)
class StagePlan:
    """One stage of the plan.

    ``base_stage`` is the index of the stage it builds on, or None with ``base_image`` the
    expanded image reference (``scratch`` for an empty base) or, for a stage that starts
    from a named local context (``--build-context NAME=DIR``), ``base_context`` its name.
    ``reads`` are the indexes of other stages it copies or mounts from.
    """

    index: int
    stage: Stage
    display: str
    base_image: str | None
    base_stage: int | None
    platform: Platform
    reads: frozenset[int] = frozenset()
    base_context: str | None = None

    @property
    def deps(self) -> frozenset[int]:
        """Every stage this one waits for."""
        return self.reads | ({self.base_stage} if self.base_stage is not None else set())


@dataclass(frozen=True)
class BuildPlan:
    """The stages to build (in file order) and the target stage's index."""

    dockerfile: Dockerfile
    stages: Mapping[int, StagePlan]
    target: int
    global_args: Mapping[str, str] = field(default_factory=dict)
    file: str = "Dockerfile"

    def stage_named(self, name: str) -> int | None:
        """The index of the stage called ``name`` (or numbered ``name``) defined anywhere."""
        return find_stage(self.dockerfile, name)


def find_stage(dockerfile: Dockerfile, name: str, before: int | None = None) -> int | None:
    """Index of the stage named ``name`` (case-insensitive) or with that number."""
    limit = len(dockerfile.stages) if before is None else before
    lowered = name.lower()
    for i, stage in enumerate(dockerfile.stages[:limit]):
        if stage.name == lowered:
            return i
    if name.isdigit() and int(name) < limit:
        return int(name)
    return None


def expand(word: str, env: Mapping[str, str], escape: str, line: int, file: str,
           what: str) -> str:
    """Expand one word, turning an expansion error into a located Dockerfile error."""
    try:
        return process_word(word, env, escape)
    except ExpansionError as exc:
        raise DockerfileError(f"{what}: {exc}", line, file) from None


def global_scope(dockerfile: Dockerfile, build_args: Mapping[str, str],
                 predefined: Mapping[str, str], file: str) -> dict[str, str]:
    """The values of the ARGs declared before the first FROM (plus the predefined ones)."""
    scope: dict[str, str] = dict(predefined)
    escape = dockerfile.directives.escape
    for arg in dockerfile.global_args:
        for d in arg.args:
            if d.name in build_args:
                scope[d.name] = build_args[d.name]
            elif d.default is not None:
                scope[d.name] = expand(d.default, scope, escape, arg.line, file, "ARG")
    return scope


def declared_globals(dockerfile: Dockerfile) -> set[str]:
    """Names declared by ARGs before the first FROM."""
    return {d.name for a in dockerfile.global_args for d in a.args}


def _stage_arg_scope(stage: Stage, globals_: Mapping[str, str], build_args: Mapping[str, str],
                     escape: str, file: str, upto: Instruction) -> dict[str, str]:
    """ARG values visible at ``upto`` (ENV aside), for expanding ``--from`` values."""
    scope: dict[str, str] = {}
    for ins in stage.instructions:
        if ins is upto:
            break
        if isinstance(ins, Arg):
            for d in ins.args:
                if d.name in build_args:
                    scope[d.name] = build_args[d.name]
                elif d.default is not None:
                    scope[d.name] = expand(d.default, scope, escape, ins.line, file, "ARG")
                elif d.name in globals_:
                    scope[d.name] = globals_[d.name]
    return scope


def _context_stage(dockerfile: Dockerfile, named: NamedContext, index: int, what: str,
                   line: int, file: str) -> int:
    """The stage a ``target:STAGE`` context names, which must come before stage ``index``."""
    found = find_stage(dockerfile, named.value, before=index)
    if found is None:
        where = "is defined later in the file" if find_stage(dockerfile, named.value) \
            is not None else "does not exist"
        raise DockerfileError(f"{what}: --build-context {named.name}=target:{named.value}: "
                              f"stage {named.value!r} {where}", line, file)
    return found


def plan(dockerfile: Dockerfile, *, build_args: Mapping[str, str], target: str | None,
         build_platform: Platform, target_platform: Platform,
         file: str = "Dockerfile",
         contexts: Mapping[str, NamedContext] | None = None) -> BuildPlan:
    """Resolve stage references and prune the stages ``target`` (default: the last) does
    not need. A named context in ``contexts`` takes the place of a stage or an image of
    its name."""
    if not dockerfile.stages:
        raise DockerfileError("the Dockerfile has no FROM instruction", None, file)
    escape = dockerfile.directives.escape
    predefined = platform_args(build_platform, target_platform)
    globals_ = global_scope(dockerfile, build_args, predefined, file)
    plans: dict[int, StagePlan] = {}
    for i, stage in enumerate(dockerfile.stages):
        line = stage.from_.line
        image = expand(stage.from_.image, globals_, escape, line, file, "FROM")
        if not image:
            raise DockerfileError("FROM: the base image name expands to an empty string "
                                  f"({stage.from_.image!r})", line, file)
        named = lookup(contexts or {}, image)
        base_context = None
        if named is None:
            base_stage = None if image.isdigit() else find_stage(dockerfile, image, before=i)
        elif named.kind == "target":
            base_stage = _context_stage(dockerfile, named, i, f"FROM {image}", line, file)
        elif named.kind == "local":
            base_stage, base_context = None, named.name
        else:
            base_stage, image = None, named.value
        platform = target_platform
        if stage.from_.platform:
            text = expand(stage.from_.platform, globals_, escape, line, file, "FROM --platform")
            try:
                platform = normalize(parse_platform(text))
            except ValueError as exc:
                raise DockerfileError(f"FROM --platform: {exc}", line, file) from None
        reads: set[int] = set()
        for ins in stage.instructions:
            source = None
            if isinstance(ins, Copy) and ins.from_:
                source = ins.from_
            for mount in ins.mounts if isinstance(ins, Run) else ():
                value = mount_option(mount, "from", line=ins.line, file=file)
                if value:
                    ref = expand(value, _stage_arg_scope(stage, globals_, build_args, escape,
                                                         file, ins),
                                 escape, ins.line, file, "RUN --mount from")
                    if (named := lookup(contexts or {}, ref)) is not None:
                        if named.kind == "target":
                            reads.add(_context_stage(dockerfile, named, i,
                                                     f"RUN --mount from={ref}", ins.line, file))
                    elif (idx := find_stage(dockerfile, ref, before=i)) is not None:
                        reads.add(idx)
                    elif find_stage(dockerfile, ref) is not None:
                        raise DockerfileError(f"RUN --mount from={ref}: stage {ref!r} is "
                                              "defined later in the file", ins.line, file)
            if source is not None:
                ref = expand(source, _stage_arg_scope(stage, globals_, build_args, escape, file,
                                                      ins), escape, ins.line, file, "--from")
                if (named := lookup(contexts or {}, ref)) is not None:
                    if named.kind == "target":
                        reads.add(_context_stage(dockerfile, named, i, f"COPY --from={ref}",
                                                 ins.line, file))
                elif (idx := find_stage(dockerfile, ref, before=i)) is not None:
                    reads.add(idx)
                elif find_stage(dockerfile, ref, before=i + 1) == i:
                    raise DockerfileError(f"COPY --from={ref}: a stage cannot copy from "
                                          "itself", ins.line, file)
                elif find_stage(dockerfile, ref) is not None:
                    raise DockerfileError(f"COPY --from={ref}: stage {ref!r} is defined later "
                                          "in the file; a stage can only copy from stages "
                                          "before it", ins.line, file)
        display = stage.name or f"stage-{i}"
        plans[i] = StagePlan(i, stage, display,
                             None if base_stage is not None or base_context else image,
                             base_stage, platform, frozenset(reads), base_context)
    if target is None:
        target_index = len(dockerfile.stages) - 1
    else:
        found = find_stage(dockerfile, target)
        if found is None:
            names = ", ".join(s.name for s in dockerfile.stages if s.name) or "none"
            raise DockerfileError(f"target stage {target!r} could not be found "
                                  f"(named stages: {names})", None, file)
        target_index = found
    needed: set[int] = set()
    todo = [target_index]
    while todo:
        i = todo.pop()
        if i in needed:
            continue
        needed.add(i)
        todo.extend(plans[i].deps)
    return BuildPlan(dockerfile, {i: plans[i] for i in sorted(needed)}, target_index,
                     globals_, file)


def unused_build_args(dockerfile: Dockerfile, build_args: Mapping[str, str]) -> list[str]:
    """``--build-arg`` names no ARG declares (BuildKit warns about them; its own
    ``BUILDKIT_*`` arguments aside)."""
    declared = declared_globals(dockerfile) | set(PROXY_ARGS)
    for stage in dockerfile.stages:
        for ins in stage.instructions:
            if isinstance(ins, Arg):
                declared.update(d.name for d in ins.args)
    return sorted(k for k in build_args if k not in declared and not k.startswith("BUILDKIT_"))
