"""The test servers themselves: a server whose port another process took moves to another
port when it may (its port was picked by ``free_port``) and says so at once otherwise; its
state and log tail are at hand for failure reports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from registry.testing.processes import listens, ours


def test_a_server_whose_port_another_server_holds_does_not_pass_for_started(
        tmp_path: Path) -> None:
    with ours(tmp_path / "first", workers=1) as first:
        assert first.proc is not None and listens(first.proc.pid, first.port)
        assert first.state() == f"pid {first.proc.pid} runs and listens on {first.address}"
        second = ours(tmp_path / "second", port=first.port, workers=1)
        with pytest.raises(RuntimeError, match=f"another process took port {first.port}"):
            second.start()
        assert second.proc is not None and second.proc.poll() is not None
        assert not listens(second.proc.pid, first.port)
        third = ours(tmp_path / "third", port=first.port, workers=1)
        third.port_free = True
        with third:
            assert third.port != first.port and third.proc is not None
            assert listens(third.proc.pid, third.port)
            assert f"127.0.0.1:{third.port}" in third.argv
    assert first.state() == f"pid {first.proc.pid} was killed by signal 15"
    assert "registry serving" in first.log_tail()


def test_a_server_whose_free_port_was_bound_meanwhile_starts_on_another(
        tmp_path: Path) -> None:
    server = ours(tmp_path / "root", workers=1)
    taken = server.port
    with socket.socket() as other:
        other.bind(("127.0.0.1", taken))
        other.listen()
        with server:
            assert server.port != taken and server.proc is not None
            assert listens(server.proc.pid, server.port)
    assert "address already in use" in server.log().lower()
