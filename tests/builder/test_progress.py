"""The progress display: BuildKit's plain format, thread safety, quiet and tty modes."""

from __future__ import annotations

import io
import re
import threading

import pytest
from rich.console import Console

from builder.errors import BuildError
from builder.progress import TAIL_LINES, Progress

pytestmark = pytest.mark.unit


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def plain() -> tuple[Progress, io.StringIO, Clock]:
    stream, clock = io.StringIO(), Clock()
    return Progress("plain", stream, clock=clock), stream, clock


def test_plain_output_is_buildkits() -> None:
    progress, stream, clock = plain()
    load = progress.vertex("[internal] load build definition from Dockerfile")
    clock.now += 0.04
    load.done()
    run = progress.vertex("[stage-1 2/5] RUN make")
    clock.now += 0.123
    run.log(b"cc -c main.c\ncc -o app")
    clock.now += 0.3
    run.log(b" main.o\n")
    clock.now += 0.0004
    run.done()
    progress.close()
    assert stream.getvalue() == (
        "#1 [internal] load build definition from Dockerfile\n"
        "#1 DONE 0.0s\n"
        "\n"
        "#2 [stage-1 2/5] RUN make\n"
        "#2 0.123 cc -c main.c\n"
        "#2 0.423 cc -o app main.o\n"
        "#2 DONE 0.4s\n"
    )


def test_plain_repeats_the_name_when_vertices_take_turns() -> None:
    progress, stream, clock = plain()
    one = progress.vertex("[a 2/2] RUN one")
    two = progress.vertex("[b 2/2] RUN two")
    clock.now += 1
    one.log(b"from one\n")
    two.log(b"from two\r\n")
    one.log(b"again\n")
    clock.now += 0.25
    two.cached()
    one.error('process "/bin/sh -c one" did not complete successfully: exit code: 2')
    assert stream.getvalue() == (
        "#1 [a 2/2] RUN one\n"
        "\n"
        "#2 [b 2/2] RUN two\n"
        "\n"
        "#1 [a 2/2] RUN one\n"
        "#1 1.000 from one\n"
        "\n"
        "#2 [b 2/2] RUN two\n"
        "#2 1.000 from two\n"
        "\n"
        "#1 [a 2/2] RUN one\n"
        "#1 1.000 again\n"
        "\n"
        "#2 [b 2/2] RUN two\n"
        "#2 CACHED\n"
        "\n"
        "#1 [a 2/2] RUN one\n"
        '#1 ERROR: process "/bin/sh -c one" did not complete successfully: exit code: 2\n'
    )


def test_unfinished_line_is_printed_when_the_vertex_ends_or_the_display_closes() -> None:
    progress, stream, clock = plain()
    failing = progress.vertex("[1/2] RUN printf no-newline; false")
    clock.now += 0.5
    failing.log(b"no-newline")
    failing.error("exit code: 1")
    hanging = progress.vertex("[2/2] RUN printf x")
    hanging.log(b"x")
    progress.close()
    progress.close()
    assert stream.getvalue().splitlines() == [
        "#1 [1/2] RUN printf no-newline; false",
        "#1 0.500 no-newline",
        "#1 ERROR: exit code: 1",
        "",
        "#2 [2/2] RUN printf x",
        "#2 0.000 x",
    ]


def test_utf8_split_across_chunks_and_bad_bytes() -> None:
    progress, stream, _ = plain()
    vertex = progress.vertex("v")
    data = "héllo wörld\n".encode()
    for i in range(len(data)):
        vertex.log(data[i:i + 1])
    vertex.log(b"\xff\xfe bad\n")
    assert stream.getvalue().splitlines()[1:] == ["#1 0.000 héllo wörld",
                                                  "#1 0.000 \ufffd\ufffd bad"]


def test_events_after_the_end_are_ignored() -> None:
    progress, stream, _ = plain()
    vertex = progress.vertex("v")
    vertex.done()
    vertex.done()
    vertex.error("late")
    vertex.log(b"late output\n")
    assert stream.getvalue() == "#1 v\n#1 DONE 0.0s\n"
    assert vertex.tail() == ["late output"]


def test_tail_keeps_the_last_lines() -> None:
    progress = Progress("quiet", io.StringIO())
    vertex = progress.vertex("v")
    vertex.log("".join(f"line {i}\n" for i in range(500)).encode() + b"partial")
    assert vertex.tail(3) == ["line 498", "line 499", "partial"]
    assert vertex.tail() == [f"line {i}" for i in range(491, 500)] + ["partial"]
    assert len(vertex.tail(1000)) == TAIL_LINES + 1
    assert vertex.tail(0) == []


def test_quiet_prints_nothing() -> None:
    stream = FakeTerminal()
    progress = Progress("quiet", stream)
    vertex = progress.vertex("[1/1] RUN make")
    vertex.log(b"output\n")
    vertex.error("failed")
    progress.vertex("other").cached()
    progress.close()
    assert stream.getvalue() == ""
    assert vertex.tail() == ["output"]


def test_auto_is_plain_without_a_terminal_and_tty_with_one() -> None:
    assert Progress("auto", io.StringIO()).mode == "plain"
    progress = Progress("auto", FakeTerminal())
    assert progress.mode == "tty"
    progress.close()


def test_unknown_mode_is_a_user_error() -> None:
    with pytest.raises(BuildError, match="unknown progress mode 'fancy'"):
        Progress("fancy", io.StringIO())


def test_concurrent_logging_keeps_every_line_whole() -> None:
    progress, stream, _ = plain()
    threads_count, lines_count = 8, 300
    barrier = threading.Barrier(threads_count)

    def work(t: int) -> None:
        vertex = progress.vertex(f"[stage-{t} 2/2] RUN work")
        barrier.wait()
        payload = b"".join(f"thread {t} line {i} ".encode() + b"x" * 200 + b"\n"
                           for i in range(lines_count))
        for start in range(0, len(payload), 97):
            vertex.log(payload[start:start + 97])
        vertex.done()

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    progress.close()
    pattern = re.compile(r"#(\d+) (?:\d+\.\d{3} thread (\d+) line (\d+) x{200}|DONE \d+\.\ds|"
                         r"\[stage-(\d+) 2/2\] RUN work)")
    seen: dict[int, list[int]] = {}
    numbers: dict[int, int] = {}
    for line in stream.getvalue().splitlines():
        if not line:
            continue
        match = pattern.fullmatch(line)
        assert match, line
        if match[4] is not None:
            assert numbers.setdefault(int(match[1]), int(match[4])) == int(match[4])
        if match[2] is not None:
            assert numbers[int(match[1])] == int(match[2])
            seen.setdefault(int(match[2]), []).append(int(match[3]))
    assert seen == {t: list(range(lines_count)) for t in range(threads_count)}
    assert sorted(numbers) == list(range(1, threads_count + 1))


def test_vertices_are_numbered_in_creation_order() -> None:
    progress = Progress("quiet", io.StringIO())
    assert [progress.vertex(str(i)).number for i in range(3)] == [1, 2, 3]


def test_tty_mode_draws_a_live_view_and_a_summary() -> None:
    stream = FakeTerminal()
    with Progress("tty", stream) as progress:
        built = progress.vertex("[stage-1 2/3] RUN make")
        built.log(b"compiling main.c\n\x1b[31mred\x1b[0m\n")
        progress._render()  # what the live view shows meanwhile
        built.done()
        progress.vertex("[stage-1 1/3] FROM busybox").cached()
        failed = progress.vertex("[stage-1 3/3] RUN false")
        failed.log(b"it broke\n")
        failed.error("exit code: 1")
    out = stream.getvalue()
    assert "\x1b[" in out
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "[+] Building" in text
    assert "(3/3) FINISHED" in text
    assert re.search(r" => \[stage-1 2/3\] RUN make +\d+\.\ds", text)
    assert " => CACHED [stage-1 1/3] FROM busybox" in text
    assert " => ERROR [stage-1 3/3] RUN false" in text
    assert "------\n > [stage-1 3/3] RUN false:\nit broke\n------" in text


def test_tty_live_view_shows_the_last_lines_of_running_steps() -> None:
    stream = FakeTerminal()
    progress = Progress("tty", stream)
    running = progress.vertex("[1/1] RUN long")
    running.log("".join(f"step {i}\n" for i in range(20)).encode())
    console_output = io.StringIO()
    Console(file=console_output, width=60, color_system=None).print(progress._render())
    shown = console_output.getvalue().splitlines()
    progress.close()
    assert shown[0].startswith("[+] Building")
    assert shown[1].startswith(" => [1/1] RUN long")
    assert [line.strip() for line in shown[2:]] == [f"=> => # step {i}" for i in range(14, 20)]
