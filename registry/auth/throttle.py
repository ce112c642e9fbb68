"""Throttling of failed logins per user and client address, and per user, shared by all
server processes.

Each failed login counts twice: for the pair (user, client address) and for the user alone.
A pair with ``max_failures`` failures, the last less than ``lockout`` seconds ago, is
*locked*: that user is refused from that address, before the password is even looked at,
until ``lockout`` seconds after the last failure. A user with ``user_max_failures``
failures (from any addresses) is locked everywhere the same way: that stops guessing spread
over many addresses. Nothing else is ever refused: other users behind the same address (a
CI fleet behind NAT) and the same user from other addresses log in as usual. A successful
login clears its pair's count; the user's count only runs out with time.

Refusals are TOOMANYREQUESTS (HTTP 429) with ``Retry-After`` and the time to retry in the
message and detail. The counts live in a small SQLite database under the data directory's
``run/`` so that every worker process sees the same ones, opened like every other store's
(:mod:`layerstore.sqlitedb`).
"""

from __future__ import annotations

import datetime
import math
import sqlite3
import threading
import time
from pathlib import Path

from layerstore import sqlitedb
from registry.errors import TOOMANYREQUESTS, RegistryError

THROTTLE_FILE = "login-throttle.db"
ANY_ADDRESS = ""
_MAX_KEY = 128
# Databases from before versions were recorded hold the same table: IF NOT EXISTS keeps it.
_SCHEMA = sqlitedb.Schema(
    what="login throttle database",
    version=1,
    create=("CREATE TABLE IF NOT EXISTS login_failures (user TEXT NOT NULL, "
            "client TEXT NOT NULL, count INTEGER NOT NULL, last REAL NOT NULL, "
            "PRIMARY KEY (user, client))",),
)


def _key(text: str) -> str:
    return text[:_MAX_KEY]


class LoginThrottle:
    """Counts failed logins per (user, client) and per user (module docstring).
    Thread-safe."""

    def __init__(self, directory: Path, *, max_failures: int, lockout: float,
                 user_max_failures: int | None = None) -> None:
        self.path = directory / THROTTLE_FILE
        self.max_failures = max_failures
        self.user_max_failures = user_max_failures or 10 * max_failures
        self.lockout = lockout
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlitedb.open_database(self.path, _SCHEMA)
        return self._db

    def _wait(self, user: str, client: str, limit: int, now: float) -> float:
        with self._lock:
            row = self._conn().execute(
                "SELECT count, last FROM login_failures WHERE user = ? AND client = ?",
                (_key(user), _key(client))).fetchone()
        if row is None or row[0] < limit:
            return 0.0
        return max(0.0, row[1] + self.lockout - now)

    def retry_after(self, user: str, client: str, now: float | None = None) -> float:
        """Seconds until ``user`` may try again from ``client`` (0: it may now)."""
        now = time.time() if now is None else now
        return max(self._wait(user, client, self.max_failures, now),
                   self._wait(user, ANY_ADDRESS, self.user_max_failures, now))

    def check(self, user: str, client: str, now: float | None = None) -> None:
        """Raise TOOMANYREQUESTS if ``user`` is locked, from ``client`` or everywhere."""
        now = time.time() if now is None else now
        pair = self._wait(user, client, self.max_failures, now)
        anywhere = self._wait(user, ANY_ADDRESS, self.user_max_failures, now)
        wait = max(pair, anywhere)
        if wait <= 0:
            return
        seconds = math.ceil(wait)
        at = datetime.datetime.fromtimestamp(now + seconds, datetime.UTC)
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        if anywhere >= pair:
            what = (f"too many failed logins for user {user!r} from any address "
                    f"({self.user_max_failures} within {self.lockout:g} s)")
        else:
            what = (f"too many failed logins for user {user!r} from {client} "
                    f"({self.max_failures} within {self.lockout:g} s)")
        raise RegistryError(
            TOOMANYREQUESTS, f"{what}; retry after {stamp} (in {seconds} s)",
            detail={"user": user, "retry_after": seconds, "retry_at": stamp},
            headers={"Retry-After": str(seconds)})

    def failed(self, user: str, client: str, now: float | None = None) -> int:
        """Count a failed login of ``user`` from ``client``; returns the pair's count.
        ``user`` ``""`` (a refresh token that names nobody) counts for the pair only."""
        now = time.time() if now is None else now
        counts = []
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                for where in (client, ANY_ADDRESS) if user else (client,):
                    key = (_key(user), _key(where))
                    row = db.execute("SELECT count, last FROM login_failures "
                                     "WHERE user = ? AND client = ?", key).fetchone()
                    count = 1 if row is None or now - row[1] >= self.lockout else row[0] + 1
                    db.execute("INSERT OR REPLACE INTO login_failures (user, client, count, "
                               "last) VALUES (?, ?, ?, ?)", (*key, count, now))
                    counts.append(count)
                db.execute("DELETE FROM login_failures WHERE last < ?", (now - self.lockout,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return counts[0]

    def succeeded(self, user: str, client: str) -> None:
        """Forget the failures of ``user`` from ``client`` (not those of the user alone)."""
        with self._lock:
            self._conn().execute("DELETE FROM login_failures WHERE user = ? AND client = ?",
                                 (_key(user), _key(client)))

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
