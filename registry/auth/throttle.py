"""Throttling of failed logins, per client address, shared by all server processes.

Each failed login of a client counts; a success clears its count. A client with
``max_failures`` failures, the last less than ``lockout`` seconds ago, is refused with
TOOMANYREQUESTS (HTTP 429, ``Retry-After``) before its password is even looked at, until
``lockout`` seconds after its last failure. The counts live in a small SQLite database under
the data directory's ``run/`` so that every worker process sees the same ones.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from pathlib import Path

from registry.errors import TOOMANYREQUESTS, RegistryError

THROTTLE_FILE = "login-throttle.db"


class LoginThrottle:
    """Counts failed logins per client (see the module docstring). Thread-safe."""

    def __init__(self, directory: Path, *, max_failures: int, lockout: float) -> None:
        self.path = directory / THROTTLE_FILE
        self.max_failures = max_failures
        self.lockout = lockout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")
            db.execute("CREATE TABLE IF NOT EXISTS failures (client TEXT PRIMARY KEY, "
                       "count INTEGER NOT NULL, last REAL NOT NULL)")
            self._db = db
        return self._db

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds until ``client`` may try again (0: it may now)."""
        now = time.time() if now is None else now
        with self._lock:
            row = self._conn().execute("SELECT count, last FROM failures WHERE client = ?",
                                       (client,)).fetchone()
        if row is None or row[0] < self.max_failures:
            return 0.0
        return max(0.0, row[1] + self.lockout - now)

    def check(self, client: str) -> None:
        """Raise TOOMANYREQUESTS if ``client`` is locked out."""
        wait = self.retry_after(client)
        if wait > 0:
            raise RegistryError(
                TOOMANYREQUESTS,
                f"too many failed logins from {client}; retry in {math.ceil(wait)} s",
                headers={"Retry-After": str(math.ceil(wait))})

    def failed(self, client: str, now: float | None = None) -> int:
        """Count a failed login of ``client``; returns its count."""
        now = time.time() if now is None else now
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT count, last FROM failures WHERE client = ?",
                                 (client,)).fetchone()
                count = 1 if row is None or now - row[1] >= self.lockout else row[0] + 1
                db.execute("INSERT OR REPLACE INTO failures (client, count, last) "
                           "VALUES (?, ?, ?)", (client, count, now))
                db.execute("DELETE FROM failures WHERE last < ?", (now - self.lockout,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return count

    def succeeded(self, client: str) -> None:
        """Forget the failures of ``client``."""
        with self._lock:
            self._conn().execute("DELETE FROM failures WHERE client = ?", (client,))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
