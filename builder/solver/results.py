"""What the solver makes: the result of one op and of one stage."""

from __future__ import annotations

from dataclasses import dataclass, replace

from builder.graph.plan import StageGraph
from layerstore.layerblob import Layer
from layerstore.oci import History, Image


@dataclass(frozen=True)
class OpResult:
    """An op's filesystem: the committed snapshot ``chain`` (None: empty) holding it, the
    full layer stack that makes it, its cache ``key`` and when it was first made
    (``created``; ``empty`` when the op changed nothing)."""

    key: str
    layers: tuple[Layer, ...] = ()
    chain: str | None = None
    created: str = ""
    empty: bool = True
    cached: bool = False


@dataclass(frozen=True)
class StageResult:
    """A built stage: its filesystem, layers, history and final cache key.

    ``inherited`` counts the history entries that came from the base image or stage."""

    stage: StageGraph
    key: str
    layers: tuple[Layer, ...]
    chain: str | None
    history: tuple[History, ...]
    inherited: int

    def image(self, created: str) -> Image:
        """The stage's image config with its history, dated ``created``."""
        return replace(self.stage.image(), created=created, history=self.history)
