"""The test servers themselves: a server that lost its port to another one says so at
start, and a server's state and log tail are at hand for failure reports."""

from __future__ import annotations

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
    assert first.state() == f"pid {first.proc.pid} was killed by signal 15"
    assert "registry serving" in first.log_tail()
