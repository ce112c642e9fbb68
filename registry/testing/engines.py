"""Throwaway real engines for a scaled-out registry: PostgreSQL and a single-node Ceph RGW.

``python -m registry.testing.engines up --dir DIR`` starts both on free loopback ports with
everything under ``DIR`` and prints the registry's settings for them as ``KEY=value`` lines
(also kept in ``DIR/engines.env``); ``down --dir DIR`` stops them by the PIDs recorded in
``DIR/engines.json``. ``--postgres-only`` / ``--rgw-only`` start one of them. From Python,
:func:`start_postgres`, :func:`start_rgw`, :func:`up`/:func:`down` and the :func:`running`
context manager do the same.

PostgreSQL 15 (Debian's ``postgresql``): ``initdb`` + ``pg_ctl`` as the ``postgres`` user when
run as root (initdb refuses root), ``C`` locale (text sorts by byte order), TCP on 127.0.0.1
only, password (SCRAM) authentication, and the durability switches off (``fsync``,
``full_page_writes``, ``synchronous_commit``): the cluster is thrown away, so a power loss
need not be survived. A ``registry`` role owns a ``registry`` database.

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
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import httpx

from registry.testing.processes import free_port

STATE_FILE = "engines.json"
ENV_FILE = "engines.env"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
REGION = "us-east-1"


class EngineError(RuntimeError):
    """An engine could not be started or stopped; the message names it and its log."""


@dataclass(frozen=True)
class PostgresEngine:
    """A running throwaway PostgreSQL cluster."""

    data_dir: str
    log_file: str
    host: str
    port: int
    database: str
    user: str
    password: str
    superuser_password: str
    pid: int

    @property
    def url(self) -> str:
        """The registry's ``metadata_url``."""
        return self.database_url(self.database)

    def database_url(self, database: str) -> str:
        """The URL of another database of the cluster, as the registry role."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    @property
    def admin_url(self) -> str:
        """The superuser's URL (database ``postgres``)."""
        return (f"postgresql://postgres:{self.superuser_password}@{self.host}:{self.port}"
                "/postgres")

    def create_database(self, name: str) -> str:
        """Create database ``name`` owned by the registry role (if missing); its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if not exists:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase,
                                         psycopg.errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(self.user)))
        return self.database_url(name)

    def settings(self) -> dict[str, str]:
        """The registry settings for it."""
        return {"REGISTRY_METADATA_URL": self.url}


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


# Processes.


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


# PostgreSQL.


def _traversable(path: Path, uid: int, gid: int) -> bool:
    """Whether user ``uid`` (group ``gid``) may reach ``path`` through every parent."""
    for part in [path, *path.parents]:
        st = part.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def start_postgres(directory: Path, *, database: str = "registry",
                   user: str = "registry") -> PostgresEngine:
    """Start a throwaway PostgreSQL cluster under ``directory`` (or, when the ``postgres``
    user cannot reach it, under a new folder of the system temp dir, recorded so that
    :func:`stop_postgres` removes it)."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    as_user: _RunAs = {}
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise EngineError("PostgreSQL cannot run as root and there is no 'postgres' user "
                              "(install Debian's postgresql package)") from None
        owner = (entry.pw_uid, entry.pw_gid)
        as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    base = directory / "postgres"
    if not _traversable(directory, *owner):
        base = Path(tempfile.mkdtemp(prefix="pybuild-postgres-"))
        (directory / "postgres.path").write_text(str(base))
    base.mkdir(exist_ok=True)
    os.chown(base, *owner)
    data, log = base / "data", base / "postgres.log"
    superuser_password, password = secrets.token_hex(16), secrets.token_hex(16)
    pwfile = base / "pwfile"
    pwfile.write_text(superuser_password + "\n")
    os.chown(pwfile, *owner)
    pwfile.chmod(0o600)
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        raise EngineError(f"{initdb} is missing: install Debian's postgresql (version 15)")
    _run([str(initdb), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "-E", "UTF8",
          "--locale=C", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--no-sync"],
         "initdb", cwd=base, **as_user)
    pwfile.unlink()
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n"
            "max_connections = 300\nshared_buffers = 64MB\nfsync = off\n"
            "full_page_writes = off\nsynchronous_commit = off\n"
            "logging_collector = off\nlog_min_messages = warning\n"
        )
    _run([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l", str(log)],
         "pg_ctl start", log, cwd=base, **as_user)
    pid = int((data / "postmaster.pid").read_text().split("\n")[0])
    engine = PostgresEngine(str(data), str(log), "127.0.0.1", port, database, user, password,
                            superuser_password, pid)
    try:
        _create_registry_database(engine)
    except Exception:
        stop_pids([pid], signal.SIGINT)
        raise
    return engine


def _create_registry_database(engine: PostgresEngine) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(engine.admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(engine.user), sql.Literal(engine.password)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(engine.database), sql.Identifier(engine.user)))
        # Test suites make a database per case; the role may do so too.
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(engine.user)))


def postmaster_pid(engine: PostgresEngine) -> int:
    """The running postmaster's PID: ``postmaster.pid`` (it changes when the cluster is
    restarted), else the one recorded at start."""
    try:
        return int((Path(engine.data_dir) / "postmaster.pid").read_text().split("\n")[0])
    except (OSError, ValueError):
        return engine.pid


def _as_owner(engine: PostgresEngine) -> _RunAs:
    if os.geteuid() != 0:
        return {}
    st = Path(engine.data_dir).stat()
    return {"user": st.st_uid, "group": st.st_gid, "extra_groups": []}


def pause_postgres(engine: PostgresEngine) -> None:
    """Stop the cluster (PostgreSQL's *fast* shutdown: clients are disconnected) and keep
    its data, for :func:`resume_postgres`."""
    _run([str(PG_BIN / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D",
          engine.data_dir], "pg_ctl stop", Path(engine.log_file),
         cwd=Path(engine.data_dir).parent, **_as_owner(engine))


def resume_postgres(engine: PostgresEngine) -> None:
    """Start a cluster :func:`pause_postgres` stopped, on the same port and data."""
    _run([str(PG_BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", engine.data_dir, "-l",
          engine.log_file], "pg_ctl start", Path(engine.log_file),
         cwd=Path(engine.data_dir).parent, **_as_owner(engine))


def stop_postgres(engine: PostgresEngine) -> None:
    """Stop the cluster by its PID and remove a temp-dir home it had. The shutdown is
    PostgreSQL's *immediate* one (SIGQUIT, no checkpoint): the data is thrown away."""
    stop_pids([postmaster_pid(engine)], signal.SIGQUIT)
    home = Path(engine.data_dir).parent
    if home.name.startswith("pybuild-postgres-") and home.parent == Path(tempfile.gettempdir()):
        shutil.rmtree(home, ignore_errors=True)


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
