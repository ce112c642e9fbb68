"""What the compiler produces: the stages of a build as steps over ops."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from builder.graph.config import StageConfig
from builder.graph.ops import FsOp, Op, walk
from layerstore.oci import Image, Platform


@dataclass(frozen=True)
class Step:
    """One instruction of a stage: its history text (``created_by``, as BuildKit writes it)
    and, for an instruction that changes the filesystem, the op it made and the title its
    progress line shows. ``keyword`` names the instruction in errors and ``command`` is the
    command a RUN failure names."""

    line: int
    keyword: str
    created_by: str
    op: FsOp | None = None
    title: str = ""
    command: str = ""


@dataclass(frozen=True)
class StageGraph:
    """One stage: the op it starts from, its steps, and the config it ends with.

    ``base`` is an image or scratch source, or the ``root`` of stage ``base_stage``;
    ``base_image`` is the config of an image base (its history starts the stage's history).
    ``reads`` are the stages it copies or mounts from; ``named`` says whether it has an
    ``AS`` name."""

    index: int
    display: str
    platform: Platform
    base: Op
    base_stage: int | None
    base_image: Image | None
    base_title: str
    steps: tuple[Step, ...]
    config: StageConfig
    from_line: int
    reads: frozenset[int] = frozenset()
    named: bool = False

    @property
    def root(self) -> Op:
        """The op whose filesystem the stage ends with."""
        for step in reversed(self.steps):
            if step.op is not None:
                return step.op
        return self.base

    @property
    def deps(self) -> frozenset[int]:
        """Every stage this one waits for."""
        return self.reads | ({self.base_stage} if self.base_stage is not None else set())

    def image(self) -> Image:
        """The image config of the stage, without history and creation time."""
        base = self.base_image
        return Image(
            architecture=self.platform.architecture, os=self.platform.os,
            variant=self.platform.variant, author=self.config.author,
            os_version=base.os_version if base else None,
            config=self.config.image_config(),
            extra={k: v for k, v in base.extra.items()
                   if not k.startswith("pybuild.buildcache")} if base else {},
        )


@dataclass(frozen=True)
class BuildGraph:
    """The stages the target needs (by index, in file order) and the target's index."""

    stages: Mapping[int, StageGraph]
    target: int
    file: str = "Dockerfile"
    multi: bool = False
    stride: int = 0
    """In the merged graph of a multi-platform build, how far apart the platforms' stage
    numbers are (a stage's number in its Dockerfile is its index modulo the stride)."""

    def ops(self) -> list[Op]:
        """Every op of the build, each once, inputs first."""
        return walk(tuple(step.op for stage in self.stages.values() for step in stage.steps
                          if step.op is not None) +
                    tuple(stage.base for stage in self.stages.values()))

    def target_of(self, index: int) -> int:
        """The target stage of the platform stage ``index`` belongs to (see ``stride``)."""
        if not self.stride:
            return self.target
        return index - index % self.stride + self.target % self.stride

    def base_chain(self, index: int) -> set[int]:
        """Stage ``index`` and the stages it is built FROM (what cache mode=min exports)."""
        out = {index}
        base = self.stages[index].base_stage
        while base is not None:
            out.add(base)
            base = self.stages[base].base_stage
        return out
