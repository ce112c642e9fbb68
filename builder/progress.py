"""The build's progress display, shaped like BuildKit's (``--progress=auto|plain|tty|quiet``).

A :class:`Progress` hands out one :class:`Vertex` per step, numbered ``#1``, ``#2`` … in the
order they start. ``plain`` prints one line per event, as BuildKit's plain progress does::

    #5 [stage-1 2/5] RUN make
    #5 0.123 cc -o app main.c
    #5 DONE 0.4s

``tty`` redraws a compact live view (one line a step with its timer, the last output lines
of the running ones) with ``rich``; ``quiet`` prints nothing; ``auto`` is ``tty`` on a
terminal and ``plain`` otherwise. Every method may be called from any thread: several
stages log at once, and no line is ever cut by another.
"""

from __future__ import annotations

import codecs
import collections
import re
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TextIO

from builder.errors import BuildError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live
    from rich.text import Text

MODES = ("auto", "plain", "tty", "quiet")
#: Output lines a vertex keeps for :meth:`Vertex.tail`.
TAIL_LINES = 100
#: Output lines the tty view shows under a running vertex.
LIVE_LINES = 6

Status = Literal["running", "done", "cached", "error"]
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\x1b\[[0-9;?]*[A-Za-z]")
_STYLES = {"running": "", "done": "blue", "cached": "blue", "error": "bold red"}
_LABELS = {"running": "", "done": "", "cached": "CACHED ", "error": "ERROR "}


class Vertex:
    """One step of the build as the display shows it; made by :meth:`Progress.vertex`."""

    def __init__(self, board: _Board, number: int, name: str) -> None:
        self._board = board
        self.number = number
        self.name = name
        self.started = board.clock()
        self.ended: float | None = None
        self.status: Status = "running"
        self.message = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def log(self, data: bytes) -> None:
        """Add output of the step: any chunk of bytes, lines may be split anywhere."""
        with self._board.lock:
            text = self._partial + self._decoder.decode(data)
            *complete, self._partial = text.split("\n")
            self._add_lines([line.removesuffix("\r") for line in complete])

    def cached(self) -> None:
        """The step's result came from the cache."""
        self._finish("cached", "CACHED")

    def done(self) -> None:
        """The step finished successfully."""
        self._finish("done", None)

    def error(self, message: str) -> None:
        """The step failed with ``message``."""
        self.message = message
        self._finish("error", f"ERROR: {message}")

    def tail(self, lines: int = 10) -> list[str]:
        """The last ``lines`` lines of output (at most :data:`TAIL_LINES`), an unfinished
        last line included."""
        with self._board.lock:
            kept = [*self._lines, self._partial] if self._partial else list(self._lines)
            return kept[-lines:] if lines > 0 else []

    def duration(self, now: float) -> float:
        """Seconds the step has run (until it ended, or until ``now``)."""
        return (self.ended if self.ended is not None else now) - self.started

    def _add_lines(self, lines: list[str]) -> None:
        self._lines.extend(lines)
        if self.status == "running" and lines:
            elapsed = self._board.clock() - self.started
            self._board.plain(self, [f"{elapsed:.3f} {line}" for line in lines])

    def _flush(self) -> None:
        """Take an unfinished last line as a line (the caller holds the lock)."""
        rest = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if rest:
            self._add_lines([rest.removesuffix("\r")])

    def _finish(self, status: Status, event: str | None) -> None:
        with self._board.lock:
            if self.status != "running":
                return
            self._flush()
            self.ended = self._board.clock()
            self.status = status
            if event is None:
                event = f"DONE {self.ended - self.started:.1f}s"
            first, *more = event.split("\n")
            self._board.plain(self, [first, *more])


class _Board:
    """What a Progress and its vertices share: the lock, the clock, the plain output."""

    def __init__(self, mode: str, stream: TextIO, clock: Callable[[], float]) -> None:
        self.mode = mode
        self.stream = stream
        self.clock = clock
        self.lock = threading.RLock()
        self.vertices: list[Vertex] = []
        self.current: int | None = None
        self.printed = False

    def plain(self, vertex: Vertex, events: list[str], header: bool = False) -> None:
        """In plain mode, print ``events`` of ``vertex`` (the caller holds the lock),
        after its name line when it starts or when other output came in between."""
        if self.mode != "plain":
            return
        out: list[str] = []
        if header or self.current != vertex.number:
            if self.printed:
                out.append("")
            out.append(f"#{vertex.number} {vertex.name}")
            self.current = vertex.number
        out.extend(f"#{vertex.number} {event}" for event in events)
        if out:
            self.stream.write("\n".join(out) + "\n")
            self.stream.flush()
            self.printed = True


class Progress:
    """The progress display of one build.

    ``mode`` is ``auto`` (``tty`` when ``stream`` is a terminal, ``plain`` otherwise),
    ``plain``, ``tty`` or ``quiet``; ``stream`` defaults to standard error; ``clock``
    (seconds, monotonic) is there for tests. Use as a context manager, or call
    :meth:`close` at the end.
    """

    def __init__(self, mode: str = "auto", stream: TextIO | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if mode not in MODES:
            raise BuildError(f"unknown progress mode {mode!r} (expected {', '.join(MODES)})")
        stream = sys.stderr if stream is None else stream
        if mode == "auto":
            mode = "tty" if _isatty(stream) else "plain"
        self.mode = mode
        self._board = _Board(mode, stream, clock)
        self._started = clock()
        self._closed = False
        self._console: Console | None = None
        self._live: Live | None = None
        if mode == "tty":
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=stream, force_terminal=True, highlight=False)
            self._live = Live(console=self._console, get_renderable=self._render,
                              refresh_per_second=8, transient=True, redirect_stdout=False,
                              redirect_stderr=False)
            self._live.start()

    def vertex(self, name: str) -> Vertex:
        """Start a step called ``name`` (``[stage-1 2/5] RUN make``)."""
        with self._board.lock:
            vertex = Vertex(self._board, len(self._board.vertices) + 1, name)
            self._board.vertices.append(vertex)
            self._board.plain(vertex, [], header=True)
            return vertex

    def steps(self) -> tuple[tuple[str, str], ...]:
        """The name and status of every step started so far, in order."""
        with self._board.lock:
            return tuple((v.name, v.status) for v in self._board.vertices)

    def close(self) -> None:
        """End the display: tty mode replaces the live view by a final summary, with the
        last output of each failed step; plain mode only prints what is left of unfinished
        output lines. Calling it again does nothing."""
        with self._board.lock:
            if self._closed:
                return
            self._closed = True
            for vertex in self._board.vertices:
                if vertex.status == "running":
                    vertex._flush()
        if self._live is not None and self._console is not None:
            self._live.stop()
            self._console.print(self._render(final=True))
            for failed in self._failed():
                self._console.print(_error_box(failed), markup=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def _failed(self) -> list[Vertex]:
        with self._board.lock:
            return [v for v in self._board.vertices if v.status == "error"]

    def _render(self, final: bool = False) -> RenderableType:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        """The tty view: a header line, then one line a step (and the last output lines
        of the running ones while the build goes on)."""
        with self._board.lock:
            now = self._board.clock()
            vertices = list(self._board.vertices)
            finished = sum(v.status != "running" for v in vertices)
            header = f"[+] Building {now - self._started:.1f}s ({finished}/{len(vertices)})"
            if final:
                header += " FINISHED"
            grid = Table.grid(expand=True)
            grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
            grid.add_column(justify="right", no_wrap=True)
            for v in vertices:
                style = _STYLES[v.status]
                grid.add_row(Text(f" => {_LABELS[v.status]}{v.name}", style=style),
                             Text(f"{v.duration(now):.1f}s", style=style))
                if v.status == "running" and not final:
                    for line in v.tail(LIVE_LINES):
                        grid.add_row(Text(f" => => # {_CONTROL.sub('', line)}", style="dim"))
            return Group(Text(header, style="bold" if final else ""), grid)


def _error_box(vertex: Vertex) -> Text:
    from rich.text import Text

    """BuildKit's report of a failed step: its name and last output between rules."""
    lines = ["------", f" > {vertex.name}:"]
    lines += [_CONTROL.sub("", line) for line in vertex.tail()]
    lines.append("------")
    return Text("\n".join(lines), style="red")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
