"""Running a build plan: every needed stage in its own thread, each waiting only for the
stages it builds on or reads from, so independent stages build in parallel."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from builder.errors import BuildError, DockerfileError, ExecError
from builder.frontend.convert import BuildPlan, StagePlan, find_stage, platform_string
from builder.frontend.dockerignore import DockerIgnore
from builder.frontend.instructions import Add, Copy, Instruction, Run, Workdir, parse_dockerfile
from builder.options import BuildOptions
from builder.progress import Progress, Vertex
from builder.remotecache import CacheSource
from builder.solver.dispatch import FS_INSTRUCTIONS, StepContext, dispatch
from builder.solver.images import ImageNotFound, ImageResolver
from builder.solver.state import StageState, merge_proxy
from builder.store import BuildStore, unpack_layers, view_of
from layerstore.assembly import StoredImage, host_architecture, timestamp
from layerstore.digest import Digest
from layerstore.layerblob import Layer
from layerstore.oci import Descriptor, Manifest
from layerstore.walk import load_manifest

_TAIL_LINES = 10


class BuildCancelled(BuildError):
    """Another stage failed, so this one stopped."""


class Solver:
    """Builds the stages of a :class:`BuildPlan` and returns the target stage's state."""

    def __init__(self, store: BuildStore, plan: BuildPlan, options: BuildOptions,
                 progress: Progress, images: ImageResolver, ignore: DockerIgnore,
                 scratch: Path, remote: tuple[CacheSource, ...] = ()) -> None:
        self.store = store
        self.plan = plan
        self.options = options
        self.progress = progress
        self.images = images
        self.cancel = threading.Event()
        self.futures: dict[int, Future[StageState]] = {}
        self.ctx = StepContext(
            store=store, options=options, file=plan.file,
            escape=plan.dockerfile.directives.escape, ignore=ignore, sources=self.sources,
            scratch=scratch, global_args=dict(plan.global_args), created=self.created,
            cancel=self.cancel, source_key=self.source_key, use_cache=self.use_cache,
            remote=remote)
        self.multi = len(plan.dockerfile.stages) > 1

    def created(self) -> str:
        """The timestamp for history entries and the image."""
        epoch = self.options.source_date_epoch
        return timestamp(epoch) if epoch is not None else timestamp()

    def solve(self) -> StageState:
        """Build every needed stage; the first failure cancels the rest and is raised."""
        with ThreadPoolExecutor(max_workers=len(self.plan.stages),
                                thread_name_prefix="stage") as pool:
            for index in self.plan.stages:
                self.futures[index] = pool.submit(self._stage, self.plan.stages[index])
            try:
                _done, _ = wait(self.futures.values(), return_when=FIRST_EXCEPTION)
            except BaseException:
                self.cancel.set()
                raise
            failed = [f for f in self.futures.values() if f.done() and f.exception()]
            if failed:
                self.cancel.set()
                wait(self.futures.values())
                errors = [f.exception() for f in self.futures.values()
                          if f.exception() is not None]
                first = next((e for e in errors if not isinstance(e, BuildCancelled)),
                             errors[0])
                assert first is not None
                raise first
        return self.futures[self.plan.target].result()

    # -- one stage ----------------------------------------------------------------------

    def _stage(self, plan: StagePlan) -> StageState:
        steps = _fs_count(plan.stage.instructions) + 1
        label = f"{plan.display} " if self.multi or plan.stage.name else ""
        base = plan.base_image if plan.base_stage is None else \
            self.plan.stages[plan.base_stage].display
        vertex = self.progress.vertex(f"[{label}1/{steps}] FROM {base}")
        try:
            state = self._base(plan)
        except BaseException as exc:
            vertex.error(str(exc))
            raise
        vertex.done()
        merge_proxy(state, self.options.build_args)
        triggers = self._triggers(plan, state)
        if triggers:
            steps += _fs_count(triggers)
        number = 1
        for ins in (*triggers, *plan.stage.instructions):
            if self.cancel.is_set():
                raise BuildCancelled("cancelled")
            step_vertex: Vertex | None = None
            if isinstance(ins, FS_INSTRUCTIONS):
                number += 1
                step_vertex = self.progress.vertex(
                    f"[{label}{number}/{steps}] {_describe(ins)}")
            try:
                dispatch(self.ctx, state, ins, step_vertex)
            except ExecError as exc:
                tail = step_vertex.tail(_TAIL_LINES) if step_vertex else []
                if step_vertex:
                    step_vertex.error(str(exc))
                shown = "".join(f"\n  | {line}" for line in tail)
                raise DockerfileError(f"{_keyword(ins)} failed: {exc}" + (
                    f"\n  last output:{shown}" if shown else ""), ins.line,
                    self.plan.file) from None
            except BaseException as exc:
                if step_vertex:
                    step_vertex.error(str(exc))
                raise
            if step_vertex:
                step_vertex.done()
        return state

    def use_cache(self, state: StageState) -> bool:
        """Whether a step of ``state``'s stage may reuse the cache."""
        if self.options.no_cache:
            return False
        names = {state.plan.display, str(state.plan.index)}
        return not names & set(self.options.no_cache_filter)

    def source_key(self, name: str, line: int) -> str:
        """The cache identity of what ``COPY --from=name`` or ``--mount from=name`` reads:
        the stage's final cache key, or the image's manifest digest."""
        index = find_stage(self.plan.dockerfile, name)
        if index is not None and index in self.futures:
            return self.futures[index].result().cache_key
        return f"image:{self._from_image(name, line).manifest.digest}"

    def _from_image(self, name: str, line: int) -> StoredImage:
        """The image a ``--from`` that names no stage refers to."""
        platform = self.options.platform or next(iter(self.plan.stages.values())).platform
        try:
            return self.images.resolve(name, platform)
        except ImageNotFound as exc:
            stages = ", ".join(s.name for s in self.plan.dockerfile.stages if s.name) or "none"
            raise DockerfileError(f"--from={name}: no stage or image named {name!r} "
                                  f"(stages: {stages}; {exc})", line, self.plan.file) from None

    def _base(self, plan: StagePlan) -> StageState:
        host = host_architecture()
        if plan.platform.architecture != host and any(
                isinstance(i, Run) for i in plan.stage.instructions):
            raise DockerfileError(
                f"stage {plan.display} targets {platform_string(plan.platform)}: its RUN "
                f"steps cannot execute on this {host} host (no emulation)",
                plan.stage.from_.line, self.plan.file)
        if plan.base_stage is not None:
            parent = self.futures[plan.base_stage].result()
            image = parent.to_image(self.created())
            state = StageState(plan, image, list(parent.layers), parent.chain)
            state.args = dict(parent.args)  # a stage built on a stage keeps its ARGs
            state.cache_key = parent.cache_key
            return state
        ref = plan.base_image or "scratch"
        if ref == "scratch":
            state = StageState(plan, None, [], None)
            state.cache_key = f"scratch:{platform_string(plan.platform)}"
            return state
        try:
            stored = self.images.resolve(ref, plan.platform)
        except ImageNotFound as exc:
            raise DockerfileError(f"FROM {ref}: {exc}", plan.stage.from_.line,
                                  self.plan.file) from None
        layers, chain = self._unpack(stored.manifest, stored.image.rootfs.diff_ids)
        state = StageState(plan, stored.image, layers, chain)
        state.cache_key = f"image:{stored.manifest.digest}"
        return state

    def _unpack(self, manifest_desc: Descriptor, diff_ids: Sequence[Digest]
                ) -> tuple[list[Layer], str | None]:
        """The layers of a stored image, unpacked into snapshots; and the top chainID."""
        manifest = load_manifest(self.store.content, manifest_desc)
        assert isinstance(manifest, Manifest)
        if len(manifest.layers) != len(diff_ids):
            raise BuildError(f"image {manifest_desc.digest}: {len(manifest.layers)} layers but "
                             f"{len(diff_ids)} diff_ids in its config")
        chain = unpack_layers(self.store, manifest.layers, diff_ids)
        layers = [Layer(d, diff_id, 0) for d, diff_id in zip(manifest.layers, diff_ids,
                                                            strict=True)]
        return layers, chain

    def _triggers(self, plan: StagePlan, state: StageState) -> tuple[Instruction, ...]:
        out: list[Instruction] = []
        for trigger in state.inherited_triggers:
            try:
                parsed = parse_dockerfile(f"FROM scratch\n{trigger}\n", self.plan.file)
            except DockerfileError as exc:
                raise DockerfileError(f"ONBUILD trigger {trigger!r} of the base image: "
                                      f"{exc.message}", plan.stage.from_.line,
                                      self.plan.file) from None
            for ins in parsed.stages[0].instructions:
                out.append(_relocate(ins, plan.stage.from_.line))
        return tuple(out)

    # -- sources for COPY --from and RUN --mount from= ------------------------------------

    @contextmanager
    def sources(self, name: str, line: int) -> Iterator[Path]:
        """A read-only view of stage or image ``name``'s filesystem."""
        index = find_stage(self.plan.dockerfile, name)
        if index is not None and index in self.futures:
            state = self.futures[index].result()
            with view_of(self.store, state.chain) as root:
                yield root
            return
        stored = self._from_image(name, line)
        _, chain = self._unpack(stored.manifest, stored.image.rootfs.diff_ids)
        with view_of(self.store, chain) as root:
            yield root


def _fs_count(instructions: tuple[Instruction, ...]) -> int:
    return sum(1 for ins in instructions if isinstance(ins, FS_INSTRUCTIONS))


def _keyword(ins: Instruction) -> str:
    return type(ins).__name__.upper()


def _describe(ins: Instruction) -> str:
    if isinstance(ins, Run):
        text = ins.command.args[0] if not ins.command.exec_form else \
            "[" + ", ".join(f'"{a}"' for a in ins.command.args) + "]"
        return f"RUN {text}".splitlines()[0]
    if isinstance(ins, Copy | Add):
        flag = f"--from={ins.from_} " if isinstance(ins, Copy) and ins.from_ else ""
        return f"{_keyword(ins)} {flag}{' '.join(ins.sources)} {ins.dest}"
    if isinstance(ins, Workdir):
        return f"WORKDIR {ins.path}"
    return _keyword(ins)


def _relocate(ins: Instruction, line: int) -> Instruction:
    return replace(ins, line=line)
