"""Process helpers of the throwaway engines (:mod:`registry.testing.engines`): run a setup
command, spawn a daemon, find free ports, and stop processes by PID."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TypedDict


class EngineError(RuntimeError):
    """An engine could not be started or stopped; the message names it and its log."""



def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pids(pids: list[int], sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Send ``sig`` to each process, wait up to ``timeout`` s for all, then SIGKILL the rest."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class _RunAs(TypedDict, total=False):
    """Who a command runs as (empty: this process's own user)."""

    user: int
    group: int
    extra_groups: list[int]


def _run(argv: list[str], what: str, log: Path | None = None, *, cwd: Path | None = None,
         user: int | None = None, group: int | None = None,
         extra_groups: list[int] | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, user=user, group=group,
                          extra_groups=extra_groups)
    if proc.returncode != 0:
        where = f"; see {log}" if log else ""
        raise EngineError(f"{what} failed ({' '.join(argv[:3])} … exited {proc.returncode}): "
                          f"{(proc.stderr or proc.stdout).strip()[-800:]}{where}")
    return proc.stdout


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _free_range(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are all free right now."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise EngineError(f"no {count} consecutive free loopback ports found")

