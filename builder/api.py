"""``build()``: the one entry point from a build request to a stored, named image."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder import buildkey
from builder.entitlements import NETWORK_HOST
from builder.errors import BuildError, ContextError, DockerfileError
from builder.options import BuildOptions
from builder.progress import Progress
from builder.store import BuildStore
from layerstore.assembly import StoredImage, host_architecture, timestamp
from layerstore.oci import Descriptor, Platform

if TYPE_CHECKING:
    from builder.attestations.attach import PlatformImage
    from builder.executor import Executor
    from builder.frontend.convert import BuildPlan
    from builder.frontend.dockerignore import DockerIgnore
    from builder.frontend.instructions import Dockerfile
    from builder.graph.compile import BaseImages
    from builder.graph.plan import BuildGraph
    from builder.platforms_build import PlatformBuild
    from builder.solver.images import ResolvedImages
    from builder.transfer import RegistryAccess
    from layerstore.oci import Descriptor


@dataclass(frozen=True)
class BuildResult:
    """What a build made: the stored image and the names given to it."""

    image: StoredImage
    tags: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    chain: str | None = None
    shortcut: bool = False
    """Whether the result is the stored image of an unchanged earlier build."""
    index: Descriptor | None = None
    """The index the tags name, when there is one: a multi-platform build's image index
    (``image`` then has the index as its manifest and the first platform's config), or a
    single image with its attestation manifests (``image`` is then the image itself)."""
    platforms: tuple[PlatformBuild, ...] = ()
    """A multi-platform build's image of each platform."""


def host_platform() -> Platform:
    """The platform RUN steps execute on."""
    return Platform(os="linux", architecture=host_architecture())


def namespace_executor(output: Callable[[bytes], None] | None,
                       cancel: threading.Event) -> Executor:
    """The executor of RUN steps: a sandbox of namespaces (see :mod:`builder.executor`)."""
    from builder.executor import NamespaceExecutor

    return NamespaceExecutor(output=output, cancel=cancel)


def build_graph(options: BuildOptions, images: BaseImages) -> BuildGraph:
    """Parse, plan and compile ``options``' Dockerfile into its op graph; ``images`` answers
    for the base images of the stages the target needs (and only those)."""
    from builder.frontend.convert import plan as make_plan
    from builder.frontend.instructions import parse_dockerfile
    from builder.graph.compile import compile_graph
    from builder.solver.images import ResolvedImages

    dockerfile = parse_dockerfile(options.dockerfile_text, options.dockerfile_name)
    host = host_platform()
    plan = make_plan(dockerfile, build_args=options.build_args, target=options.target,
                     build_platform=host, target_platform=options.platform or host,
                     file=options.dockerfile_name, contexts=options.build_contexts)
    _check_emulation(plan)
    if isinstance(images, ResolvedImages):
        _prefetch(plan, images)
    if options.network == "host":
        options.allow.require(NETWORK_HOST, "--network=host")
    return compile_graph(plan, build_args=options.build_args, network=options.network,
                         images=images, source_platform=options.platform,
                         allow=options.allow, extra_hosts=options.extra_hosts,
                         contexts=options.build_contexts)


def lint(options: BuildOptions, dockerfile: Dockerfile, needed: Collection[int],
         ignore: DockerIgnore | None) -> list[str]:
    """The build checks' warnings about the stages ``needed``, one line each; raises
    :class:`~builder.errors.DockerfileError` listing them when the Dockerfile's ``check``
    directive (or ``BUILDKIT_DOCKERFILE_CHECK``) says ``error=true``."""
    from builder.frontend.checks import check_dockerfile, check_policy

    policy = check_policy(dockerfile.directives.check,
                          options.build_args.get("BUILDKIT_DOCKERFILE_CHECK"))
    found = check_dockerfile(options.dockerfile_text, dockerfile, needed=needed, ignore=ignore,
                             policy=policy)
    lines = [f"{w.rule}: {w.message} (line {w.line})" for w in found]
    if found and policy.error:
        raise DockerfileError("lint violation found for rules: " + ", ".join(
            dict.fromkeys(w.rule for w in found)) + "\n - " + "\n - ".join(lines),
            found[0].line, options.dockerfile_name)
    return lines


def _check_emulation(plan: BuildPlan) -> None:
    """Make sure the RUN steps of every needed stage can execute: a stage for a foreign
    platform runs them under qemu (registered with binfmt_misc when missing)."""
    from builder.frontend.instructions import Run
    from builder.platforms import PlatformError
    from builder.platforms_qemu import ensure_emulation

    for stage in plan.stages.values():
        if any(isinstance(i, Run) for i in stage.stage.instructions):
            try:
                ensure_emulation(stage.platform)
            except PlatformError as exc:
                raise DockerfileError(f"stage {stage.display}: {exc}",
                                      stage.stage.from_.line, plan.file) from None


def _prefetch(plan: BuildPlan, images: ResolvedImages) -> None:
    """Resolve (pull) the base images of the needed stages side by side; the compiler then
    finds them resolved. A failure is left for the compiler to report at its FROM line."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = {(s.base_image, s.platform.os, s.platform.architecture, s.platform.variant):
              (s.base_image, s.platform) for s in plan.stages.values()
              if s.base_stage is None and s.base_image and s.base_image != "scratch"}
    if len(wanted) < 2:
        return

    def fetch(ref: str, platform: Platform) -> None:
        with contextlib.suppress(BuildError):
            images.resolve(ref, platform)

    with ThreadPoolExecutor(max_workers=min(4, len(wanted)),
                            thread_name_prefix="pull") as pool:
        for future in [pool.submit(fetch, ref, p) for ref, p in wanted.values()]:
            future.result()


def build(store: BuildStore, options: BuildOptions, progress: Progress,
          access: RegistryAccess | None = None) -> BuildResult:
    """Build ``options`` into ``store`` and name the result; raises a
    :class:`~builder.errors.BuildError` (nothing is named) when any step fails.

    An unchanged rebuild (see :mod:`builder.buildkey`) answers with the stored image."""
    if not options.context.is_dir():
        raise ContextError(f"build context {options.context} is not a directory")
    host = host_platform()
    if len(options.platforms) > 1:
        from builder.platforms_build import build_platforms

        return build_platforms(store, options, progress, access)
    if access is None:
        from builder.transfer import RegistryAccess
        from registry.client.settings import ClientSettings

        access = RegistryAccess(store, ClientSettings())
    key = buildkey.compute(store, options, host) if buildkey.recordable(options) else None
    if key is not None and buildkey.eligible(options) and not options.attest.any and (
            hit := buildkey.lookup(store, key, access.images, progress)):
        for tag in options.tags:  # as exporters.image.name_image, without importing it
            store.images.put(tag, hit.image.manifest)
        return BuildResult(hit.image, options.tags, hit.warnings, hit.chain, shortcut=True)
    first_step = len(progress.steps())
    result = _build(store, options, progress, access)
    if options.no_cache or options.no_cache_filter:
        buildkey.forget_all(store)
    if key is not None:
        buildkey.record(store, key, result.image, result.chain, result.warnings,
                        access.images, progress.steps()[first_step:])
    return result


def _build(store: BuildStore, options: BuildOptions, progress: Progress,
           access: RegistryAccess) -> BuildResult:
    """The build itself: compile, solve, export and name."""
    import tempfile

    from builder.cachemounts import cache_ids, export_cache_mounts
    from builder.exporters.image import export_image, name_image
    from builder.frontend.convert import unused_build_args
    from builder.frontend.dockerignore import DockerIgnore, find_dockerignore
    from builder.frontend.instructions import parse_dockerfile
    from builder.remotecache import INLINE_KEY, cache_manifest, inline_cache
    from builder.solver.images import ResolvedImages
    from builder.solver.scheduler import Solver

    started = timestamp()
    images = ResolvedImages(access.images)
    graph = build_graph(options, images)
    from builder.platforms_build import base_platform_warnings

    warnings = base_platform_warnings(graph)
    dockerfile = parse_dockerfile(options.dockerfile_text, options.dockerfile_name)
    unused = unused_build_args(dockerfile, options.build_args)
    if unused:
        warnings.append(f"one or more build args were not consumed: {', '.join(unused)}")
    ignore_file = find_dockerignore(options.context, options.dockerfile_path or
                                    options.context / "Dockerfile")
    ignore = DockerIgnore.load(ignore_file)
    warnings.extend(lint(options, dockerfile, graph.stages, ignore))
    remote = tuple(c for c in (access.open_cache(spec) for spec in options.cache_from) if c)
    try:
        with tempfile.TemporaryDirectory(prefix="build-", dir=store.tmp) as scratch:
            solver = Solver(store, graph, options, progress, images, ignore, Path(scratch),
                            namespace_executor, remote)
            result = solver.solve()
    finally:
        for source in remote:
            source.close()
    extra = {}
    for spec in options.cache_to:
        stages = None if spec.mode == "max" else graph.base_chain(graph.target)
        steps = solver.steplog.steps(stages)
        if spec.type == "inline":
            extra[INLINE_KEY] = inline_cache(steps, result.layers)
        else:
            mounts = export_cache_mounts(store, cache_ids(graph.ops()), spec.mount_limit,
                                         warnings.append) if spec.cache_mounts else []
            access.save_cache(spec, cache_manifest(store, steps, mounts))
    epoch = options.source_date_epoch
    if epoch is not None:
        created = timestamp(epoch)
    elif len(result.history) > result.inherited and result.history[-1].created:
        created = result.history[-1].created  # a fully cached rebuild gives the same image
    else:
        created = timestamp()
    stored = export_image(store, result, created=created, labels=options.labels, extra=extra,
                          annotations=options.annotations)
    index = None
    if options.attest.any:
        from builder.attestations.attach import PlatformImage

        index = attest(store, options, access, [PlatformImage(stored, result.chain)], started,
                       progress)
    name_image(store, stored, options.tags, index)
    return BuildResult(stored, options.tags, tuple(warnings), result.chain, index=index)


def attest(store: BuildStore, options: BuildOptions, access: RegistryAccess,
           images: Sequence[PlatformImage], started: str, progress: Progress,
           annotations: Mapping[str, str] | None = None) -> Descriptor:
    """Store the attestations ``options`` ask for about each of ``images`` (one per platform)
    and the index holding the images and them (with ``annotations``)."""
    from builder.attestations.attach import BuildRecord, attest_images, resolved_digest
    from builder.attestations.provenance import BaseImage

    asked = [k for k, on in (("sbom", options.attest.sbom),
                             ("provenance", options.attest.provenance)) if on]
    where = ", ".join(str(i.image.image.platform) for i in images)
    vertex = progress.vertex(f"[{where}] generating {' and '.join(asked)}")
    bases = tuple(BaseImage(ref, platform, resolved_digest(store, ref, stored))
                  for ref, platform, stored in access.images.resolved())
    record = BuildRecord(started=started, finished=timestamp(),
                         builder_platform=host_platform(), bases=bases,
                         epoch=options.source_date_epoch)
    try:
        index = attest_images(store, options, options.attest, images, options.tags, record,
                              annotations)
    except BuildError as exc:
        vertex.error(str(exc))
        raise
    vertex.log(f"attestation index {index.digest}\n".encode())
    vertex.done()
    return index
