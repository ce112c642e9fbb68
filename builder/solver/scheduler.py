"""Running a build graph: every stage in its own thread, each op once.

Each stage's thread walks its steps; a filesystem step asks for its op's result. Results
are kept by op digest, so an op two stages share runs once (the first asker runs it, the
other waits). An op read from another stage (``COPY --from``, ``--mount from=``) is waited
for until that stage's thread has made it; image and scratch sources are made by whoever
asks first. Independent stages therefore build in parallel, and the first failure cancels
the rest.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar, cast

from builder.cachemounts import restorer
from builder.errors import BuildError, DockerfileError, ExecError, ImageNotFound
from builder.frontend.convert import platform_string
from builder.frontend.dockerignore import DockerIgnore
from builder.graph.ops import (
    ContextSource,
    CopyOp,
    FsOp,
    ImageSource,
    MergeOp,
    Op,
    ScratchSource,
)
from builder.graph.plan import BuildGraph, StageGraph, Step
from builder.options import BuildOptions
from builder.progress import Progress, Vertex
from builder.remotecache import CachedStep, CacheSource, StepLog
from builder.solver.cache import CacheRecord, cache_key
from builder.solver.contexts import named_roots
from builder.solver.images import ResolvedImages
from builder.solver.opcache import OpCache
from builder.solver.results import OpResult, StageResult
from builder.solver.runops import ExecutorFactory, Workspace, run_op
from builder.solver.steps import commit_change
from builder.sshforward import SshAgents
from builder.store import BuildStore, unpack_layers, view_of
from layerstore.assembly import timestamp
from layerstore.layerblob import Layer
from layerstore.oci import History, Manifest
from layerstore.walk import load_manifest

_TAIL_LINES = 10
_POLL = 0.2


class BuildCancelled(BuildError):
    """Another stage failed, so this one stopped."""


T = TypeVar("T")


class Solver:
    """Builds the stages of a :class:`BuildGraph` and returns the target stage's result.

    RUN steps go to the :class:`~builder.executor.Executor` that ``executor`` makes for
    each run (given where its output goes and the build's cancel event)."""

    def __init__(self, store: BuildStore, graph: BuildGraph, options: BuildOptions,
                 progress: Progress, images: ResolvedImages, ignore: DockerIgnore,
                 scratch: Path, executor: ExecutorFactory,
                 remote: tuple[CacheSource, ...] = ()) -> None:
        self.store = store
        self.graph = graph
        self.options = options
        self.progress = progress
        self.images = images
        self.cancel = threading.Event()
        self.steplog = StepLog()
        named = named_roots(options.build_contexts)
        self.workspace = Workspace(options.context, ignore, scratch, store.cache_mounts,
                                   dict(options.secrets), graph.file, executor, self.cancel,
                                   options.limits, named,
                                   SshAgents(dict(options.ssh)) if options.ssh else None,
                                   restorer(store, remote, self._note))
        self.cache = OpCache(store, options.context, ignore, graph.file, remote, named)
        self.stages: dict[int, Future[StageResult]] = {}
        self._ops: dict[str, Future[OpResult]] = {}
        self._ops_changed = threading.Condition()
        self._owner: dict[str, int] = {}
        for index, stage in graph.stages.items():
            for step in stage.steps:
                if step.op is not None:
                    self._owner.setdefault(step.op.digest, index)

    def _note(self, message: str) -> None:
        self.progress.vertex(f"[internal] {message}").done()

    def created(self) -> str:
        """The timestamp for history entries and the image."""
        epoch = self.options.source_date_epoch
        return timestamp(epoch) if epoch is not None else timestamp()

    def solve(self) -> StageResult:
        """Build every stage of the graph; the first failure cancels the rest and is
        raised."""
        try:
            return self._solve()
        finally:
            if self.workspace.ssh is not None:
                self.workspace.ssh.close()

    def _solve(self) -> StageResult:
        with ThreadPoolExecutor(max_workers=len(self.graph.stages) + 1,
                                thread_name_prefix="stage") as pool:
            for index, stage in self.graph.stages.items():
                self.stages[index] = pool.submit(self._stage, stage)
            pool.submit(self._prefetch)
            try:
                wait(self.stages.values(), return_when=FIRST_EXCEPTION)
            except BaseException:
                self.cancel.set()
                raise
            failed = [f for f in self.stages.values() if f.done() and f.exception()]
            if failed:
                self.cancel.set()
                wait(self.stages.values())
                errors = [f.exception() for f in self.stages.values()
                          if f.exception() is not None]
                first = next((e for e in errors if not isinstance(e, BuildCancelled)),
                             errors[0])
                assert first is not None
                raise first
        return self.stages[self.graph.target].result()

    def _prefetch(self) -> None:
        """Resolve and unpack the images steps read (``COPY --from=image``, ``--mount
        from=image``) while the stages run; a failure is raised to the step that reads
        the image."""
        for stage in self.graph.stages.values():
            for step in stage.steps:
                for source in step.op.inputs()[1:] if step.op is not None else ():
                    if self.cancel.is_set():
                        return
                    if isinstance(source, ImageSource):
                        with contextlib.suppress(Exception):
                            self._source(source, step.line)

    # -- one stage ----------------------------------------------------------------------

    def _use_cache(self, stage: StageGraph) -> bool:
        if self.options.no_cache:
            return False
        number = stage.index % self.graph.stride if self.graph.stride else stage.index
        return not {stage.display, str(number)} & set(self.options.no_cache_filter)

    def _stage(self, stage: StageGraph) -> StageResult:
        total = sum(1 for s in stage.steps if s.op is not None) + 1
        label = f"{stage.display} " if self.graph.multi or stage.named else ""
        if self.graph.stride:
            label = f"{self._platform_label(stage)} {label}"
        vertex = self.progress.vertex(f"[{label}1/{total}] {stage.base_title}")
        try:
            if stage.base_stage is not None:
                parent = self._wait(self.stages[stage.base_stage])
                base = OpResult(parent.key, parent.layers, parent.chain)
                history = list(parent.history)
            else:
                base = self._source(stage.base, stage.from_line)
                history = list(stage.base_image.history or ()) if stage.base_image else []
        except BaseException as exc:
            vertex.error(str(exc))
            raise
        vertex.done()
        inherited = len(history)
        use = self._use_cache(stage)
        key, current, number = base.key, base, 1
        for step in stage.steps:
            if self.cancel.is_set():
                raise BuildCancelled("cancelled")
            if step.op is None:
                key = cache_key(key, {"op": "config", "history": step.created_by})
                created = self.cache.config_created(key, use) or self.created()
                self.store.cache.put(CacheRecord(key, current.chain, None, created))
                history.append(History(created=created, created_by=step.created_by,
                                       empty_layer=True))
                self.steplog.add(CachedStep(key, current.layers, created, True, stage.index))
                continue
            number += 1
            step_vertex = self.progress.vertex(f"[{label}{number}/{total}] {step.title}")
            current = self._step(stage, step, step.op, step_vertex, use)
            key = current.key
            history.append(History(created=current.created, created_by=step.created_by,
                                   empty_layer=True if current.empty else None))
            self.steplog.add(CachedStep(key, current.layers, current.created, current.empty,
                                        stage.index))
        return StageResult(stage, key, current.layers, current.chain, tuple(history),
                           inherited)

    def _platform_label(self, stage: StageGraph) -> str:
        """``linux/arm64``, or ``linux/amd64->arm64`` for a stage of the arm64 build that runs
        on another platform (``FROM --platform=$BUILDPLATFORM``), as BuildKit shows them."""
        owner = self.graph.stages.get(self.graph.target_of(stage.index))
        target = owner.platform if owner is not None else stage.platform
        if stage.platform == target:
            return platform_string(target)
        return f"{platform_string(stage.platform)}->{target.architecture}" + (
            f"/{target.variant}" if target.variant else "")

    def _step(self, stage: StageGraph, step: Step, op: FsOp, vertex: Vertex,
              use: bool) -> OpResult:
        try:
            result = self._op(op, stage.index, use, vertex, step.command)
        except ExecError as exc:
            tail = vertex.tail(_TAIL_LINES)
            vertex.error(str(exc))
            shown = "".join(f"\n  | {line}" for line in tail)
            raise DockerfileError(f"{step.keyword} failed: {exc}" + (
                f"\n  last output:{shown}" if shown else ""), step.line,
                self.graph.file) from None
        except BaseException as exc:
            vertex.error(str(exc))
            raise
        if result.cached:
            vertex.cached()
        vertex.done()
        return result

    # -- ops ----------------------------------------------------------------------------

    def _wait(self, future: Future[T]) -> T:
        """The future's result, giving up when the build is cancelled."""
        while True:
            try:
                return future.result(timeout=_POLL)
            except TimeoutError:
                if self.cancel.is_set():
                    raise BuildCancelled("cancelled") from None

    def _claim(self, op: Op) -> tuple[Future[OpResult], bool]:
        with self._ops_changed:
            future = self._ops.get(op.digest)
            if future is not None:
                return future, False
            future = self._ops[op.digest] = Future()
            self._ops_changed.notify_all()
            return future, True

    def _op(self, op: FsOp, stage: int, use: bool, vertex: Vertex | None,
            command: str) -> OpResult:
        """The result of ``op``, made here unless another thread makes or made it."""
        return self._once(op, lambda: self._run(op, stage, use, vertex, command))

    def _once(self, op: Op, make: Callable[[], OpResult]) -> OpResult:
        """``make()``'s result for ``op``, unless another thread makes or made it: then
        that thread's result (or error)."""
        future, mine = self._claim(op)
        if not mine:
            return self._wait(future)
        try:
            result = make()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(result)
        return result

    def _input(self, op: Op, stage: int, line: int, use: bool) -> OpResult:
        """An input of an op of ``stage``: a source made now, or an op of another stage,
        waited for until that stage's thread has made it."""
        if isinstance(op, ImageSource | ScratchSource | ContextSource):
            return self._source(op, line)
        owner = self._owner.get(op.digest, stage)
        if owner == stage:
            return self._op(cast(FsOp, op), stage, use, None, "")
        with self._ops_changed:
            while op.digest not in self._ops:
                if self.cancel.is_set():
                    raise BuildCancelled("cancelled")
                self._ops_changed.wait(_POLL)
            future = self._ops[op.digest]
        return self._wait(future)

    def _source(self, op: Op, line: int) -> OpResult:
        if isinstance(op, ScratchSource):
            return OpResult(f"scratch:{platform_string(op.platform)}")
        if isinstance(op, ContextSource):
            return OpResult("context")
        assert isinstance(op, ImageSource)
        return self._once(op, lambda: self._image(op, line))

    def _image(self, op: ImageSource, line: int) -> OpResult:
        """An image's layers, unpacked into snapshots."""
        try:
            stored = self.images.resolve(op.ref, op.platform)
        except ImageNotFound as exc:
            stages = ", ".join(s.display for s in self.graph.stages.values()
                               if s.named) or "none"
            raise DockerfileError(f"--from={op.ref}: no stage or image named {op.ref!r} "
                                  f"(stages: {stages}; {exc})", line, self.graph.file) \
                from None
        manifest = load_manifest(self.store.content, stored.manifest)
        assert isinstance(manifest, Manifest)
        diff_ids = stored.image.rootfs.diff_ids
        if len(manifest.layers) != len(diff_ids):
            raise BuildError(f"image {stored.manifest.digest}: {len(manifest.layers)} layers "
                             f"but {len(diff_ids)} diff_ids in its config")
        chain = unpack_layers(self.store, manifest.layers, diff_ids)
        layers = tuple(Layer(d, diff_id, 0)
                       for d, diff_id in zip(manifest.layers, diff_ids, strict=True))
        return OpResult(f"image:{stored.manifest.digest}", layers, chain)

    def _merge(self, op: MergeOp, base: OpResult, upper: OpResult, key: str) -> OpResult:
        """Stack the layers ``upper`` made on an empty filesystem onto ``base``."""
        created = self.created()
        if not upper.layers:
            result = OpResult(key, base.layers, base.chain, created, True)
        else:
            layers = (*base.layers, *upper.layers)
            chain = unpack_layers(self.store, [x.descriptor for x in layers],
                                  [x.diff_id for x in layers])
            result = OpResult(key, layers, chain, created, False)
        self.cache.remember(result)
        return result

    def _run(self, op: FsOp, stage: int, use: bool, vertex: Vertex | None,
             command: str) -> OpResult:
        """Make ``op``'s result: from a cache when its key is there, else by running it."""
        inputs = [self._input(i, stage, op.line, use) for i in op.inputs()]
        base = inputs[0]
        cacheable = not isinstance(op, CopyOp) or op.cacheable
        key = self.cache.key(op, inputs) if cacheable else None
        if key is not None and use:
            hit = self.cache.local(key, base) or self.cache.imported(key, base)
            if hit is not None:
                return hit
        if isinstance(op, MergeOp):
            return self._merge(op, base, inputs[1], key or "")
        results = {i.digest: r for i, r in zip(op.inputs(), inputs, strict=True)}

        @contextmanager
        def views(source: Op) -> Iterator[Path]:
            with view_of(self.store, results[source.digest].chain) as root:
                yield root

        layer, chain = commit_change(
            self.store, base.chain,
            lambda rootfs: run_op(self.workspace, op, rootfs, views, command,
                                  vertex.log if vertex is not None else None),
            compression=self.options.compression,
            source_date_epoch=self.options.source_date_epoch,
            level=self.options.compression_level)
        created = self.created()
        layers = base.layers if layer is None else (*base.layers, layer)
        if key is None:
            key = cache_key(base.key, {"op": op.digest, "uncached": uuid.uuid4().hex})
            return OpResult(key, layers, chain, created, layer is None)
        result = OpResult(key, layers, chain, created, layer is None)
        self.cache.remember(result)
        return result
