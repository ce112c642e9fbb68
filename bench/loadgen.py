"""Load generators the registry benchmarks share: wrk for GETs, hey for HEADs."""

from __future__ import annotations

import re
import subprocess


def wrk(url: str, headers: dict[str, str] | None = None, seconds: int = 10) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) of wrk with 2 threads and 32 connections."""
    argv = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run([*argv, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        print(f"    warning: {errors.group(1)} non-2xx answers from {url}")
    return rps, float(p99.group(1)) * scale


def hey_head(url: str, *, seconds: int = 10) -> tuple[float, float]:
    """Requests/s and p99 latency (ms) of HEAD requests from hey with 32 connections (wrk
    cannot time HEAD: it waits for a body that never comes)."""
    out = subprocess.run(["hey", "-m", "HEAD", "-c", "32", "-z", f"{seconds}s", url],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = re.search(r"99% in ([\d.]+) secs", out)
    if latency is None:  # hey leaves the 99% line out when few answers came back
        latency = re.search(r"Slowest:\s+([\d.]+) secs", out)
        if latency is None:
            raise RuntimeError(f"hey HEAD {url}: no answer timed:\n{out[-1500:]}")
    p99 = float(latency.group(1)) * 1000
    codes = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    bad = sum(int(n) for code, n in codes if code != "200")
    if bad:
        print(f"    warning: {bad} non-200 answers from {url}")
    return rps, p99
