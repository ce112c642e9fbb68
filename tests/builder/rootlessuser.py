"""A throwaway ordinary user for rootless builds: made with ``useradd``, given a range of
subordinate ids, and able to run this checkout's ``pybuild`` (and buildah) as itself.

Nothing here depends on pytest: the rootless benchmark uses it too. Everything the user
gets lives under one directory (its home, its stores, its scratch space) that
:meth:`RootlessUser.remove` deletes together with the user.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
#: Enough subordinate ids for every uid and gid the examples use (654321 the largest).
SUBORDINATE_COUNT = 1_000_000
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class UserSetupFailed(RuntimeError):
    """The user, its ids or its Python could not be set up; the message says which step."""


def _run(argv: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(list(argv), capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise UserSetupFailed(f"{' '.join(argv)} failed ({proc.returncode}): "
                              f"{proc.stderr.decode(errors='replace').strip()}")
    return proc


def free_subordinate_start() -> int:
    """The first id above every range in /etc/subuid and /etc/subgid (65536-aligned)."""
    end = 100_000
    for path in (SUBUID, SUBGID):
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                fields = line.split(":")
                with contextlib.suppress(ValueError, IndexError):
                    end = max(end, int(fields[1]) + int(fields[2]))
    return -(-end // 65536) * 65536


def _world_usable(path: Path) -> bool:
    """Whether anyone may execute ``path`` and search every directory above it."""
    path = path.resolve()
    for p in (path, *path.parents):
        try:
            mode = p.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


@dataclass(frozen=True)
class RootlessUser:
    """An ordinary user made for the tests: ``name``, ids, and ``base`` (mode 0755) that
    holds its ``home`` and anything else made for it."""

    name: str
    uid: int
    gid: int
    base: Path
    python: tuple[str, ...]
    python_path: str | None

    @property
    def home(self) -> Path:
        """The user's home directory (its default pybuild store is below it)."""
        return self.base / "home"

    @property
    def store(self) -> Path:
        """Where pybuild keeps this user's store by default."""
        return self.home / ".local" / "share" / "pybuild"

    @classmethod
    def create(cls, prefix: str = "pbrl", *, subordinate: bool = True) -> RootlessUser:
        """Add a new user (with ``subordinate`` ids, or none at all) and find a Python that
        it can run this checkout with."""
        name = f"{prefix}{uuid.uuid4().hex[:8]}"
        base = Path(tempfile.mkdtemp(prefix=f"pybuild-rootless-{name}-"))
        base.chmod(0o755)
        try:
            _run(["useradd", "--create-home", "--home-dir", str(base / "home"), "--shell",
                  "/bin/sh", "--user-group", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0",
                  name])
            if subordinate:
                start = free_subordinate_start()
                ids = f"{start}-{start + SUBORDINATE_COUNT - 1}"
                _run(["usermod", "--add-subuids", ids, "--add-subgids", ids, name])
            entry = _run(["id", "-u", name]).stdout, _run(["id", "-g", name]).stdout
            uid, gid = int(entry[0]), int(entry[1])
            python, python_path = _user_python(uid, gid)
        except BaseException:
            _remove(name, base)
            raise
        return cls(name, uid, gid, base, python, python_path)

    def remove(self) -> None:
        """Delete the user, its subordinate ids and everything under ``base``."""
        _remove(self.name, self.base)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """A login-like environment of the user (no daemon unless ``extra`` asks)."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "PATH": PATH, "LANG": "C.UTF-8", "PYBUILD_NO_DAEMON": "1"}
        if self.python_path:
            env["PYTHONPATH"] = self.python_path
        env.update(extra or {})
        return env

    def argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run as the user (real, effective and saved ids, its groups)."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--", *argv]

    def pybuild_argv(self, *args: str) -> list[str]:
        """``pybuild ARGS`` of this checkout, run as the user."""
        return self.argv([*self.python, "-m", "builder.cli", *args])

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            timeout: float = 600, cwd: Path | None = None,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` as the user; with ``check``, fail naming the output when it fails."""
        proc = subprocess.run(self.argv(argv), capture_output=True, timeout=timeout,
                              env=self.env(env), cwd=cwd or self.base)
        if check and proc.returncode != 0:
            raise UserSetupFailed(f"{' '.join(argv)} as {self.name} failed "
                                  f"({proc.returncode}):\n"
                                  f"{proc.stdout.decode(errors='replace')[-2000:]}"
                                  f"{proc.stderr.decode(errors='replace')[-3000:]}")
        return proc

    def pybuild(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 600,
                check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``pybuild ARGS`` as the user."""
        return self.run([*self.python, "-m", "builder.cli", *args], env=env, timeout=timeout,
                        check=check)

    def own(self, path: Path) -> Path:
        """Hand ``path`` (under ``base``) to the user."""
        os.chown(path, self.uid, self.gid)
        return path

    def workdir(self, name: str) -> Path:
        """A new directory ``base/name`` the user may write to."""
        path = self.base / name
        path.mkdir(parents=True, exist_ok=True)
        return self.own(path)

    def share(self, source: Path, name: str | None = None) -> Path:
        """``source`` made readable to the user under ``base`` (a hard link where
        possible, else a copy)."""
        target = self.base / (name or source.name)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        target.chmod(0o644)
        return target


def _user_python(uid: int, gid: int) -> tuple[tuple[str, ...], str | None]:
    """How the user starts this checkout's Python: this interpreter when the user can run
    it, else the system's ``python3`` (the same version) with this checkout and its
    installed packages on ``PYTHONPATH``."""
    setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    probe = ["-c", "import builder.cli, isal, httpx"]
    if _world_usable(Path(sys.executable)) and _world_usable(ROOT / "builder" / "cli.py"):
        proc = subprocess.run([*setpriv, sys.executable, *probe], capture_output=True,
                              timeout=120, cwd="/", env={"PATH": PATH})
        if proc.returncode == 0:
            return (sys.executable,), None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin") or ""
    paths = os.pathsep.join([str(ROOT), sysconfig.get_paths()["purelib"]])
    if system:
        proc = subprocess.run([*setpriv, system, *probe], capture_output=True, timeout=120,
                              cwd="/", env={"PATH": PATH, "PYTHONPATH": paths})
        if proc.returncode == 0:
            return (system,), paths
        detail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:]
    else:
        detail = [f"no {version} in /usr/bin or /usr/local/bin"]
    raise UserSetupFailed(f"an ordinary user cannot run this checkout's Python "
                          f"({sys.executable}, {ROOT}): {' '.join(detail)}")


def _remove(name: str, base: Path) -> None:
    """Take the user's subordinate ids back, delete the user, then its files."""
    for path, flag in ((SUBUID, "--del-subuids"), (SUBGID, "--del-subgids")):
        ranges = _ranges(path, name)
        if ranges:
            subprocess.run(["usermod", flag, ranges, name], capture_output=True, timeout=120)
    subprocess.run(["userdel", name], capture_output=True, timeout=120)
    shutil.rmtree(base, ignore_errors=True)


def _ranges(path: Path, name: str) -> str:
    """The user's ranges in ``path`` as usermod spells them (``FIRST-LAST,…``)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return ""
    out = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] == name:
            with contextlib.suppress(ValueError):
                out.append(f"{int(fields[1])}-{int(fields[1]) + int(fields[2]) - 1}")
    return ",".join(out)
