"""Throwaway real engines for a scaled-out registry: PostgreSQL and a single-node Ceph RGW.

``python -m registry.testing.engines up --dir DIR`` starts both on free loopback ports with
everything under ``DIR`` and prints the registry's settings for them as ``KEY=value`` lines
(also kept in ``DIR/engines.env``); ``down --dir DIR`` stops them by the PIDs recorded in
``DIR/engines.json``. ``--postgres-only`` / ``--rgw-only`` start one of them. From Python,
:func:`start_postgres`, :func:`start_rgw`, :func:`up`/:func:`down` and the :func:`running`
context manager do the same.

PostgreSQL is :mod:`registry.testing.pgengine`; the process helpers are
:mod:`registry.testing.engineprocs`.

Ceph 16 (``ceph-mon ceph-mgr ceph-osd radosgw``): one monitor, one manager, one memstore OSD
and radosgw with authentication off between the daemons (the recipe measured in the project's
notes); the S3 user comes from ``radosgw-admin user create`` and the bucket from one signed S3
``PUT /bucket`` (signature version 2, which RGW accepts), so no S3 library is needed here. The
OSD keeps objects in memory: stopping it loses them, which a throwaway store may.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import httpx

from registry.testing.engineprocs import (
    EngineError,
    _free_range,
    _run,
    _spawn,
    stop_pids,
)
from registry.testing.pgengine import (
    PG_BIN,
    PostgresEngine,
    pause_postgres,
    postmaster_pid,
    resume_postgres,
    start_postgres,
    stop_postgres,
)
from registry.testing.processes import free_port

__all__ = [
    "PG_BIN", "EngineError", "Engines", "PostgresEngine", "RgwEngine", "down", "gateway_pid",
    "pause_gateway", "pause_postgres", "postmaster_pid", "recorded", "resume_gateway",
    "resume_postgres", "running", "start_postgres", "start_rgw", "stop_pids", "stop_postgres",
    "stop_rgw", "up",
]

STATE_FILE = "engines.json"
ENV_FILE = "engines.env"
REGION = "us-east-1"


@dataclass(frozen=True)
class RgwEngine:
    """A running throwaway single-node Ceph cluster answering S3 on ``endpoint``."""

    directory: str
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    pids: tuple[int, ...]

    def settings(self) -> dict[str, str]:
        """The registry settings (and AWS credentials) for it."""
        return {
            "REGISTRY_STORAGE": "s3",
            "REGISTRY_S3_ENDPOINT": self.endpoint,
            "REGISTRY_S3_BUCKET": self.bucket,
            "REGISTRY_S3_REGION": REGION,
            "REGISTRY_S3_PATH_STYLE": "true",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


@dataclass(frozen=True)
class Engines:
    """What :func:`up` started."""

    directory: Path
    postgres: PostgresEngine | None = None
    rgw: RgwEngine | None = None

    def settings(self) -> dict[str, str]:
        """Every ``KEY: value`` the registry needs to use them."""
        out: dict[str, str] = {}
        for engine in (self.postgres, self.rgw):
            if engine is not None:
                out.update(engine.settings())
        return out

    def stop(self) -> None:
        """Stop them (see :func:`down`)."""
        down(self.directory)


# Ceph RGW.


def _ceph_conf(d: Path, fsid: str, mon: tuple[int, int], ports: int, rgw_bind: str) -> str:
    return f"""[global]
fsid = {fsid}
mon initial members = a
mon host = [v2:127.0.0.1:{mon[0]},v1:127.0.0.1:{mon[1]}]
public network = 127.0.0.1/32
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = false
paxos propose interval = 0.1
paxos min wait = 0.01
ms bind ipv6 = false
ms bind port min = {ports}
ms bind port max = {ports + 31}
run dir = {d}/run
crash dir = {d}/crash
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
log file = {d}/log/$name.log
keyring = {d}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
[mon]
mon data = {d}/mon/$id
[mgr]
mgr data = {d}/mgr/$id
[osd]
osd data = {d}/osd/$id
osd objectstore = memstore
memstore device bytes = 4294967296
[client.rgw.registry]
ms mon client mode = crc
rgw data = {d}/rgw
rgw frontends = beast endpoint={rgw_bind}
rgw thread pool size = 32
log file = {d}/log/rgw.log
"""


def start_rgw(directory: Path, *, bucket: str = "registry", timeout: float = 120,
              listen: str = "", access_key: str = "", secret_key: str = "") -> RgwEngine:
    """Start a single-node Ceph cluster with radosgw under ``directory/ceph``, make an S3
    user and ``bucket``. radosgw listens on ``listen`` (``HOST:PORT``; default a free
    loopback port: ``0.0.0.0:7480`` in a container); the user's keys are made up unless
    given."""
    for tool in ("ceph-mon", "ceph-mgr", "ceph-osd", "radosgw", "radosgw-admin", "ceph"):
        if shutil.which(tool) is None:
            raise EngineError(f"{tool} is missing: install ceph-mon ceph-mgr ceph-osd radosgw "
                              "ceph-common (scripts/install.sh)")
    d = Path(directory).resolve() / "ceph"
    for sub in ("mon", "mgr/x", "osd", "rgw", "run", "log", "crash"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    mon = (free_port(), free_port())
    host, _, port_text = (listen or f"127.0.0.1:{free_port()}").rpartition(":")
    if not host or not port_text.isdigit():
        raise EngineError(f"--rgw-listen must be HOST:PORT, not {listen!r}")
    rgw_port = int(port_text)
    conf = d / "ceph.conf"
    conf.write_text(_ceph_conf(d, fsid, mon, _free_range(32), f"{host}:{rgw_port}"))
    c = ["-c", str(conf)]
    log = d / "log"
    pids: list[int] = []
    try:
        _run(["ceph-authtool", "--create-keyring", str(d / "keyring"), "--gen-key", "-n",
              "mon.", "--cap", "mon", "allow *"], "ceph-authtool")
        _run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a",
              f"[v2:127.0.0.1:{mon[0]},v1:127.0.0.1:{mon[1]}]", str(d / "monmap")],
             "monmaptool")
        _run(["ceph-mon", *c, "--mkfs", "-i", "a", "--monmap", str(d / "monmap"),
              "--keyring", str(d / "keyring")], "ceph-mon --mkfs", log / "mon.a.log")
        pids.append(_spawn(["ceph-mon", *c, "-i", "a", "-f"], log / "mon.a.out").pid)
        pids.append(_spawn(["ceph-mgr", *c, "-i", "x", "-f"], log / "mgr.x.out").pid)
        osd_uuid = str(uuid.uuid4())
        osd_id = _run(["ceph", *c, "--connect-timeout", "60", "osd", "new", osd_uuid],
                      "ceph osd new", log / "mon.a.log").strip()
        (d / "osd" / osd_id).mkdir(exist_ok=True)
        _run(["ceph-osd", *c, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid],
             "ceph-osd --mkfs", log / f"osd.{osd_id}.log")
        pids.append(_spawn(["ceph-osd", *c, "-i", osd_id, "-f"], log / "osd.out").pid)
        rgw = _spawn(["radosgw", *c, "-n", "client.rgw.registry", "-f"], log / "rgw.out")
        pids.append(rgw.pid)
        endpoint = f"http://127.0.0.1:{rgw_port}"
        _wait_http(endpoint, rgw, timeout, log / "rgw.log")
        access_key = access_key or "PYB" + secrets.token_hex(8).upper()
        secret_key = secret_key or secrets.token_hex(20)
        _run(["radosgw-admin", *c, "user", "create", "--uid=registry",
              "--display-name=registry", f"--access-key={access_key}",
              f"--secret={secret_key}"], "radosgw-admin user create", log / "rgw.log")
        _create_bucket(endpoint, bucket, access_key, secret_key)
    except BaseException:
        stop_pids(pids, signal.SIGKILL, timeout=5)
        raise
    return RgwEngine(str(d), endpoint, bucket, access_key, secret_key, tuple(pids))


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineError(f"radosgw exited with {proc.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, timeout=1)
            return
        time.sleep(0.1)
    raise EngineError(f"radosgw did not answer on {url} within {timeout} s; see {log}")


def _create_bucket(endpoint: str, bucket: str, access_key: str, secret_key: str) -> None:
    """``PUT /bucket`` signed with S3 signature version 2 (path-style)."""
    date = email.utils.formatdate(usegmt=True)
    to_sign = f"PUT\n\n\n{date}\n/{bucket}"
    signature = base64.b64encode(
        hmac.new(secret_key.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    response = httpx.put(f"{endpoint}/{bucket}", timeout=60, headers={
        "Date": date, "Authorization": f"AWS {access_key}:{signature}"})
    if response.status_code not in (200, 409):
        raise EngineError(f"creating bucket {bucket!r} on {endpoint} answered "
                          f"{response.status_code}: {response.text[:300]}")


GATEWAY_PID = "radosgw.pid"


def gateway_pid(engine: RgwEngine) -> int:
    """The running radosgw's PID (the last started: :func:`resume_gateway` records it)."""
    try:
        return int((Path(engine.directory) / "run" / GATEWAY_PID).read_text())
    except (OSError, ValueError):
        return engine.pids[-1]


def pause_gateway(engine: RgwEngine) -> None:
    """Stop radosgw alone (the S3 endpoint goes away; the cluster and its objects stay)."""
    stop_pids([gateway_pid(engine)], signal.SIGTERM, timeout=10)


def resume_gateway(engine: RgwEngine, timeout: float = 120) -> None:
    """Start radosgw again on the same endpoint, after :func:`pause_gateway`."""
    d = Path(engine.directory)
    rgw = _spawn(["radosgw", "-c", str(d / "ceph.conf"), "-n", "client.rgw.registry", "-f"],
                 d / "log" / "rgw.out")
    (d / "run" / GATEWAY_PID).write_text(str(rgw.pid))
    _wait_http(engine.endpoint, rgw, timeout, d / "log" / "rgw.log")


def stop_rgw(engine: RgwEngine) -> None:
    """Stop every daemon of the cluster by its PID (radosgw first)."""
    pids = list(reversed(engine.pids))
    if gateway_pid(engine) not in pids:
        pids.insert(0, gateway_pid(engine))
    stop_pids(pids, signal.SIGTERM, timeout=3)


# Both, with recorded state.


class _RgwOptions(TypedDict, total=False):
    """The keyword options of :func:`start_rgw` that :func:`up` passes on."""

    bucket: str
    timeout: float
    listen: str
    access_key: str
    secret_key: str


def up(directory: Path, *, postgres: bool = True, rgw: bool = True,
       **rgw_options: Unpack[_RgwOptions]) -> Engines:
    """Start the chosen engines under ``directory`` and record them (``engines.json``,
    ``engines.env``) for :func:`down`; ``rgw_options`` go to :func:`start_rgw`."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / STATE_FILE).exists():
        raise EngineError(f"{directory / STATE_FILE} exists: run 'down --dir {directory}' first")
    pg = start_postgres(directory) if postgres else None
    try:
        ceph = start_rgw(directory, **rgw_options) if rgw else None
    except BaseException:
        if pg is not None:
            stop_postgres(pg)
        raise
    engines = Engines(directory, pg, ceph)
    state = {"postgres": pg and asdict(pg), "rgw": ceph and asdict(ceph)}
    (directory / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
    (directory / ENV_FILE).write_text(
        "".join(f"{k}={v}\n" for k, v in engines.settings().items()))
    return engines


def recorded(directory: Path) -> Engines | None:
    """The engines :func:`up` recorded under ``directory``, if any."""
    try:
        state = json.loads((Path(directory) / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    pg = PostgresEngine(**state["postgres"]) if state.get("postgres") else None
    ceph = None
    if state.get("rgw"):
        ceph = RgwEngine(**{**state["rgw"], "pids": tuple(state["rgw"]["pids"])})
    return Engines(Path(directory), pg, ceph)


def down(directory: Path) -> bool:
    """Stop what :func:`up` recorded under ``directory``; whether there was anything."""
    engines = recorded(directory)
    if engines is None:
        return False
    if engines.rgw is not None:
        stop_rgw(engines.rgw)
    if engines.postgres is not None:
        stop_postgres(engines.postgres)
    (Path(directory) / STATE_FILE).unlink()
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / ENV_FILE).unlink()
    return True


@contextlib.contextmanager
def running(directory: Path, *, postgres: bool = True, rgw: bool = True) -> Iterator[Engines]:
    """The chosen engines, up for the ``with`` block and stopped after it."""
    engines = up(directory, postgres=postgres, rgw=rgw)
    try:
        yield engines
    finally:
        down(directory)


def main(argv: list[str] | None = None) -> int:
    """``up --dir DIR [--postgres-only|--rgw-only] [--foreground]`` or ``down --dir DIR``."""
    parser = argparse.ArgumentParser(prog="python -m registry.testing.engines",
                                     description="throwaway PostgreSQL and Ceph RGW")
    parser.add_argument("command", choices=("up", "down", "env"))
    parser.add_argument("--dir", type=Path, required=True, help="where everything is kept")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--postgres-only", action="store_true")
    only.add_argument("--rgw-only", action="store_true")
    parser.add_argument("--rgw-listen", default="", metavar="HOST:PORT",
                        help="where radosgw listens (default: a free loopback port)")
    parser.add_argument("--access-key", default=os.environ.get("ENGINES_S3_ACCESS_KEY", ""),
                        help="the S3 user's access key (default $ENGINES_S3_ACCESS_KEY or new)")
    parser.add_argument("--secret-key", default=os.environ.get("ENGINES_S3_SECRET_KEY", ""),
                        help="its secret key (default $ENGINES_S3_SECRET_KEY or new)")
    parser.add_argument("--foreground", action="store_true",
                        help="after up, stay until SIGTERM or SIGINT, then stop them (a "
                             "container's main process)")
    args = parser.parse_args(argv)
    engines: Engines | None
    try:
        if args.command == "up":
            engines = up(args.dir, postgres=not args.rgw_only, rgw=not args.postgres_only,
                         listen=args.rgw_listen, access_key=args.access_key,
                         secret_key=args.secret_key)
        elif args.command == "env":
            engines = recorded(args.dir)
            if engines is None:
                raise EngineError(f"nothing recorded in {args.dir}")
        else:
            if not down(args.dir):
                print(f"nothing recorded in {args.dir}", file=sys.stderr)
            return 0
    except EngineError as exc:
        print(f"engines: {exc}", file=sys.stderr)
        return 1
    for key, value in engines.settings().items():
        print(f"{key}={value}", flush=True)
    if args.command == "up" and args.foreground:
        _wait_for_stop_signal()
        down(args.dir)
    return 0


def _wait_for_stop_signal() -> None:
    """Block until SIGTERM or SIGINT arrives."""
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    signal.sigwait(signals)


if __name__ == "__main__":
    sys.exit(main())
