"""A throwaway PostgreSQL 15 cluster (Debian's ``postgresql``) for the registry's metadata:
``initdb`` + ``pg_ctl`` as the ``postgres`` user when run as root (initdb refuses root), ``C``
locale (text sorts by byte order), TCP on 127.0.0.1 only, password (SCRAM) authentication, and
the durability switches off (``fsync``, ``full_page_writes``, ``synchronous_commit``): the
cluster is thrown away, so a power loss need not be survived. A ``registry`` role owns a
``registry`` database. :mod:`registry.testing.engines` starts it with Ceph RGW."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

from registry.testing.engineprocs import (
    EngineError,
    _run,
    _RunAs,
    stop_pids,
)
from registry.testing.processes import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


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

