"""Multi-platform builds: one graph per target platform, solved together, one image index.

Each platform's Dockerfile is planned and compiled with its own ``TARGETPLATFORM`` (stages
without ``FROM --platform`` target it; ``FROM --platform=$BUILDPLATFORM`` stages run on this
machine). The graphs are merged into one, every platform's stages renumbered, and solved by
one :class:`~builder.solver.scheduler.Solver`: ops are kept by digest, so a stage that is the
same for every platform (a ``$BUILDPLATFORM`` stage that does not read ``TARGET*``) runs its
steps once and the platforms share the result. Foreign platforms RUN under qemu (see
:mod:`builder.platforms_qemu`). Each platform's image is stored, then an OCI index of them
(see :mod:`builder.exporters.index`), which the tags name and ``--push`` pushes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from builder.options import BuildOptions
from builder.progress import Progress
from builder.store import BuildStore
from layerstore.assembly import StoredImage, timestamp
from layerstore.oci import Platform

if TYPE_CHECKING:
    from builder.api import BuildResult
    from builder.graph.plan import BuildGraph, StageGraph
    from builder.solver.results import StageResult
    from builder.transfer import RegistryAccess

__all__ = ["PlatformBuild", "base_platform_warnings", "build_platforms", "merge_graphs"]


@dataclass(frozen=True)
class PlatformBuild:
    """One platform's part of a multi-platform build: its image and final snapshot."""

    platform: Platform
    image: StoredImage
    chain: str | None


def merge_graphs(graphs: Sequence[BuildGraph]) -> tuple[BuildGraph, tuple[int, ...]]:
    """One graph holding every graph's stages (those of graph ``k`` renumbered by ``k``
    times the stride) and the index of each graph's target in it.

    A stage equal to one already taken (same platform, base, steps and config, once its
    stage references are renumbered: a ``$BUILDPLATFORM`` stage that reads no ``TARGET*``
    argument) is not added again: the stages that read it read the first one, so it is
    built and shown once."""
    from builder.graph.plan import BuildGraph

    stride = max(max(g.stages) for g in graphs) + 1
    stages: dict[int, StageGraph] = {}
    targets = []
    for k, graph in enumerate(graphs):
        shift = k * stride
        moved: dict[int, int] = {}
        for index in sorted(graph.stages):
            stage = graph.stages[index]
            candidate = replace(
                stage, index=index + shift,
                base_stage=None if stage.base_stage is None else moved[stage.base_stage],
                reads=frozenset(moved[r] for r in stage.reads))
            same = next((i for i, s in stages.items()
                         if replace(s, index=candidate.index) == candidate), None)
            if same is None:
                stages[candidate.index] = candidate
                moved[index] = candidate.index
            else:
                moved[index] = same
        targets.append(moved[graph.target])
    first = graphs[0]
    return BuildGraph(stages, targets[0], first.file, True, stride), tuple(targets)


def base_platform_warnings(graph: BuildGraph) -> list[str]:
    """BuildKit's ``InvalidBaseImagePlatform`` warning for every stage whose base image is
    for another platform than the stage (a single-platform image used for a foreign
    platform: its programs are not that platform's)."""
    from builder.platforms import format_platform, normalize

    out = []
    for stage in graph.stages.values():
        base = stage.base_image
        if base is None or stage.base_stage is not None or not base.architecture:
            continue
        got = normalize(Platform(os=base.os or "linux", architecture=base.architecture,
                                 variant=base.variant or None))
        wanted = normalize(stage.platform)
        if (got.os, got.architecture) != (wanted.os, wanted.architecture):
            text = (f"InvalidBaseImagePlatform: Base image {stage.base_title.removeprefix('FROM ')}"
                    f" was pulled with platform \"{format_platform(got)}\", expected "
                    f"\"{format_platform(wanted)}\" for current build ({graph.file}:"
                    f"{stage.from_line})")
            if text not in out:
                out.append(text)
    return out


def build_platforms(store: BuildStore, options: BuildOptions, progress: Progress,
                    access: RegistryAccess | None = None) -> BuildResult:
    """Build ``options.platforms`` into ``store``: an image per platform, an index of them
    named by every tag. Raises a :class:`~builder.errors.BuildError` (nothing is named) when
    any platform fails."""
    from builder.api import BuildResult, attest, build_graph, lint, namespace_executor
    from builder.cachemounts import cache_ids, export_cache_mounts
    from builder.exporters.image import export_image
    from builder.exporters.index import assemble_index
    from builder.frontend.convert import unused_build_args
    from builder.frontend.dockerignore import DockerIgnore, find_dockerignore
    from builder.frontend.instructions import parse_dockerfile
    from builder.remotecache import INLINE_KEY, cache_manifest, inline_cache
    from builder.solver.images import ResolvedImages
    from builder.solver.scheduler import Solver

    if access is None:
        from builder.transfer import RegistryAccess
        from registry.client.settings import ClientSettings

        access = RegistryAccess(store, ClientSettings())
    started = timestamp()
    images = ResolvedImages(access.images)
    graphs = [build_graph(replace(options, platform=p, platforms=()), images)
              for p in options.platforms]
    graph, targets = merge_graphs(graphs)
    warnings = base_platform_warnings(graph)
    dockerfile = parse_dockerfile(options.dockerfile_text, options.dockerfile_name)
    unused = unused_build_args(dockerfile, options.build_args)
    if unused:
        warnings.append(f"one or more build args were not consumed: {', '.join(unused)}")
    ignore = DockerIgnore.load(find_dockerignore(options.context, options.dockerfile_path or
                                                 options.context / "Dockerfile"))
    warnings.extend(lint(options, dockerfile, graphs[0].stages, ignore))
    remote = tuple(c for c in (access.open_cache(spec) for spec in options.cache_from) if c)
    try:
        with tempfile.TemporaryDirectory(prefix="build-", dir=store.tmp) as scratch:
            solver = Solver(store, graph, options, progress, images, ignore, Path(scratch),
                            namespace_executor, remote)
            solver.solve()
            results = [solver.stages[t].result() for t in targets]
    finally:
        for source in remote:
            source.close()
    extra = {}
    for spec in options.cache_to:
        chain_stages = None if spec.mode == "max" else set().union(
            *(graph.base_chain(t) for t in targets))
        steps = solver.steplog.steps(chain_stages)
        if spec.type == "inline":
            extra[INLINE_KEY] = steps
        else:
            mounts = export_cache_mounts(store, cache_ids(graph.ops()), spec.mount_limit,
                                         warnings.append) if spec.cache_mounts else []
            access.save_cache(spec, cache_manifest(store, steps, mounts))
    built = []
    for platform, result in zip(options.platforms, results, strict=True):
        added = {INLINE_KEY: inline_cache(extra[INLINE_KEY], result.layers)} \
            if INLINE_KEY in extra else None
        stored = export_image(store, result, created=_created(options, result),
                              labels=options.labels, extra=added,
                              annotations=options.annotations)
        built.append(PlatformBuild(platform, stored, result.chain))
    if options.attest.any:
        from builder.attestations.attach import PlatformImage

        index = attest(store, options, access, [PlatformImage(b.image, b.chain) for b in built],
                       started, progress, dict(options.index_annotations) or None)
    else:
        index = assemble_index(store.content, [b.image for b in built],
                               annotations=dict(options.index_annotations) or None)
    head = built[0].image
    for tag in options.tags:
        store.images.put(tag, index)
    return BuildResult(StoredImage(index, head.config, head.image), options.tags,
                       tuple(warnings), built[0].chain, index=index,
                       platforms=tuple(built))


def _created(options: BuildOptions, result: StageResult) -> str:
    """The image's creation time, as a single-platform build dates it."""
    epoch = options.source_date_epoch
    if epoch is not None:
        return timestamp(epoch)
    if len(result.history) > result.inherited and result.history[-1].created:
        return result.history[-1].created
    return timestamp()
