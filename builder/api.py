"""``build()``: the one entry point from a build request to a stored, named image."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder import buildkey
from builder.errors import ContextError
from builder.options import BuildOptions
from builder.progress import Progress
from builder.store import BuildStore
from layerstore.assembly import StoredImage, host_architecture, timestamp
from layerstore.oci import Platform

if TYPE_CHECKING:
    from builder.frontend.convert import BuildPlan
    from builder.transfer import RegistryAccess


@dataclass(frozen=True)
class BuildResult:
    """What a build made: the stored image and the names given to it."""

    image: StoredImage
    tags: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    chain: str | None = None


def host_platform() -> Platform:
    """The platform RUN steps execute on."""
    return Platform(os="linux", architecture=host_architecture())


def _base_chain(plan: BuildPlan, index: int) -> set[int]:
    """The target stage and the stages it is built FROM (what mode=min exports)."""
    out = {index}
    base = plan.stages[index].base_stage
    while base is not None:
        out.add(base)
        base = plan.stages[base].base_stage
    return out


def build(store: BuildStore, options: BuildOptions, progress: Progress,
          access: RegistryAccess | None = None) -> BuildResult:
    """Build ``options`` into ``store`` and name the result; raises a
    :class:`~builder.errors.BuildError` (nothing is named) when any step fails."""
    if not options.context.is_dir():
        raise ContextError(f"build context {options.context} is not a directory")
    host = host_platform()
    if access is None:
        from builder.transfer import RegistryAccess
        from registry.client.settings import ClientSettings

        access = RegistryAccess(store, ClientSettings())
    key = buildkey.compute(store, options, host) if buildkey.eligible(options) else None
    if key is not None and (hit := buildkey.lookup(store, key, access.images, progress)):
        for tag in options.tags:  # as exporter.name_image, without importing the exporter
            store.images.put(tag, hit.image.manifest)
        return BuildResult(hit.image, options.tags, hit.warnings, hit.chain)
    first_step = len(progress.steps())
    result = _build(store, options, progress, access, host)
    if key is not None:
        buildkey.record(store, key, result.image, result.chain, result.warnings,
                        access.images, progress.steps()[first_step:])
    return result


def _build(store: BuildStore, options: BuildOptions, progress: Progress,
           access: RegistryAccess, host: Platform) -> BuildResult:
    """The build itself: plan, solve, export and name."""
    from builder.exporter import export_image, name_image
    from builder.frontend.convert import plan as make_plan
    from builder.frontend.convert import unused_build_args
    from builder.frontend.dockerignore import DockerIgnore, find_dockerignore
    from builder.frontend.instructions import parse_dockerfile
    from builder.remotecache import INLINE_KEY, cache_manifest, inline_cache
    from builder.solver.scheduler import Solver

    dockerfile = parse_dockerfile(options.dockerfile_text, options.dockerfile_name)
    plan = make_plan(dockerfile, build_args=options.build_args, target=options.target,
                     build_platform=host, target_platform=options.platform or host,
                     file=options.dockerfile_name)
    warnings = []
    unused = unused_build_args(dockerfile, options.build_args)
    if unused:
        warnings.append(f"one or more build args were not consumed: {', '.join(unused)}")
    ignore_file = find_dockerignore(options.context, options.dockerfile_path or
                                    options.context / "Dockerfile")
    ignore = DockerIgnore.load(ignore_file)
    remote = tuple(c for c in (access.open_cache(spec) for spec in options.cache_from) if c)
    try:
        with tempfile.TemporaryDirectory(prefix="build-", dir=store.tmp) as scratch:
            solver = Solver(store, plan, options, progress, access.images, ignore,
                            Path(scratch), remote)
            state = solver.solve()
    finally:
        for source in remote:
            source.close()
    extra = {}
    for spec in options.cache_to:
        stages = None if spec.mode == "max" else _base_chain(plan, plan.target)
        steps = solver.ctx.steplog.steps(stages)
        if spec.type == "inline":
            extra[INLINE_KEY] = inline_cache(steps, state.layers)
        else:
            access.save_cache(spec, cache_manifest(store, steps))
    epoch = options.source_date_epoch
    if epoch is not None:
        created = timestamp(epoch)
    elif len(state.history) > state.inherited_history and state.history[-1].created:
        created = state.history[-1].created  # a fully cached rebuild gives the same image
    else:
        created = timestamp()
    stored = export_image(store, state, created=created, labels=options.labels, extra=extra)
    name_image(store, stored, options.tags)
    return BuildResult(stored, options.tags, tuple(warnings), state.chain)
