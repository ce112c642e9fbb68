"""Where robot accounts and users' CLI secrets are kept: the :class:`RobotStore` seam and
its SQLite implementation, ``<root>/robots.db`` (opened like every store of the project,
:mod:`layerstore.sqlitedb`). The PostgreSQL one is :mod:`registry.robots.postgres`.

Tables: ``robots`` keyed by ``(project, name)`` (the account name's parts), and
``user_secrets`` keyed by id with a unique index on the secret's hash, so that a login
with a CLI secret is one indexed lookup. ``robot_state.generation`` counts the changes:
a server's caches of verified credentials are dropped when it moves.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from layerstore import sqlitedb
from registry.robots.values import (
    Robot,
    RobotError,
    RobotExists,
    RobotNotFound,
    UserSecret,
    robot_name,
)

ROBOTS_FILE = "robots.db"

_SCHEMA = sqlitedb.Schema(
    what="robot accounts database",
    version=1,
    create=(
        "CREATE TABLE robots (project TEXT NOT NULL, name TEXT NOT NULL, "
        "actions TEXT NOT NULL, secret_hash TEXT NOT NULL, created_at REAL NOT NULL, "
        "expires_at REAL, disabled INTEGER NOT NULL DEFAULT 0, "
        "description TEXT NOT NULL DEFAULT '', PRIMARY KEY (project, name))",
        "CREATE TABLE user_secrets (id TEXT PRIMARY KEY, user TEXT NOT NULL, "
        "label TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, "
        "UNIQUE (user, label))",
        "CREATE TABLE robot_state (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "generation INTEGER NOT NULL)",
        "INSERT INTO robot_state (id, generation) VALUES (1, 0)",
    ),
)

ROBOT_COLUMNS = ("project, name, actions, secret_hash, created_at, expires_at, disabled, "
                 "description")
SECRET_COLUMNS = "id, user, label, secret_hash, created_at"


def robot_of(row: Sequence[Any]) -> Robot:
    """A :class:`Robot` from a row of :data:`ROBOT_COLUMNS`."""
    project, name, actions, secret_hash, created, expires, disabled, description = row
    return Robot(project, name, tuple(a for a in actions.split(",") if a), secret_hash,
                 float(created), None if expires is None else float(expires), bool(disabled),
                 description)


def secret_of(row: Sequence[Any]) -> UserSecret:
    """A :class:`UserSecret` from a row of :data:`SECRET_COLUMNS`."""
    id_, user, label, secret_hash, created = row
    return UserSecret(id_, user, label, secret_hash, float(created))


class RobotStore(Protocol):
    """Robot accounts and users' CLI secrets (SQLite or PostgreSQL)."""

    location: str

    def get(self, project: str, name: str) -> Robot | None:
        """The robot ``name`` of ``project``, if any (an indexed lookup)."""
        ...

    def robots(self, project: str | None = None) -> list[Robot]:
        """Every robot (of ``project``), by project and name."""
        ...

    def add(self, robot: Robot) -> None:
        """Store a new robot; RobotError if its name is taken."""
        ...

    def update(self, project: str, name: str, **changes: Any) -> Robot:
        """Change ``secret_hash``, ``disabled``, ``expires_at`` or ``description`` of a
        robot; RobotNotFound if there is none."""
        ...

    def remove(self, project: str, name: str) -> bool:
        """Delete a robot; ``False`` if there was none."""
        ...

    def add_secret(self, secret: UserSecret) -> None:
        """Store a user's new CLI secret; RobotError if the user has one of that label."""
        ...

    def secrets(self, user: str | None = None) -> list[UserSecret]:
        """The CLI secrets (of ``user``), by user and label."""
        ...

    def secret_by_hash(self, secret_hash: str) -> UserSecret | None:
        """The CLI secret whose hash is ``secret_hash`` (an indexed lookup)."""
        ...

    def secret_by_id(self, secret_id: str) -> UserSecret | None:
        """The CLI secret ``secret_id``, if it is still there."""
        ...

    def remove_secret(self, user: str, id_or_label: str) -> bool:
        """Revoke the secret of ``user`` with that id or label; ``False`` if none."""
        ...

    def generation(self) -> int:
        """A number that changes whenever anything stored changes."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...


_UPDATABLE = ("secret_hash", "disabled", "expires_at", "description")


def check_changes(changes: dict[str, Any]) -> None:
    """RobotError for a change :meth:`RobotStore.update` does not make."""
    unknown = set(changes) - set(_UPDATABLE)
    if unknown:
        raise RobotError(f"cannot change {', '.join(sorted(unknown))} of a robot")


class SqliteRobotStore:
    """The :class:`RobotStore` of ``directory/robots.db``. Thread-safe."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / ROBOTS_FILE
        self.location = str(self.path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlitedb.open_database(self.path, _SCHEMA)
        return self._db

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn().execute(sql, args).fetchall()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("UPDATE robot_state SET generation = generation + 1")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def get(self, project: str, name: str) -> Robot | None:
        """The robot ``name`` of ``project``, if any."""
        rows = self._read(f"SELECT {ROBOT_COLUMNS} FROM robots WHERE project = ? AND name = ?",
                          (project, name))
        return robot_of(rows[0]) if rows else None

    def robots(self, project: str | None = None) -> list[Robot]:
        """Every robot (of ``project``), by project and name."""
        if project is None:
            rows = self._read(f"SELECT {ROBOT_COLUMNS} FROM robots ORDER BY project, name")
        else:
            rows = self._read(f"SELECT {ROBOT_COLUMNS} FROM robots WHERE project = ? "
                              "ORDER BY name", (project,))
        return [robot_of(r) for r in rows]

    def add(self, robot: Robot) -> None:
        """Store a new robot; RobotError if its name is taken."""
        try:
            with self._writing() as db:
                db.execute(f"INSERT INTO robots ({ROBOT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (robot.project, robot.name, ",".join(robot.actions),
                            robot.secret_hash, robot.created_at, robot.expires_at,
                            int(robot.disabled), robot.description))
        except sqlite3.IntegrityError:
            raise RobotExists(f"NAME: robot {robot.full_name!r} exists already") from None

    def update(self, project: str, name: str, **changes: Any) -> Robot:
        """Change some fields of a robot (see :class:`RobotStore`)."""
        check_changes(changes)
        with self._writing() as db:
            for key, value in changes.items():
                db.execute(f"UPDATE robots SET {key} = ? WHERE project = ? AND name = ?",
                           (int(value) if key == "disabled" else value, project, name))
            row = db.execute(f"SELECT {ROBOT_COLUMNS} FROM robots WHERE project = ? AND "
                             "name = ?", (project, name)).fetchone()
            if row is None:
                raise RobotNotFound(f"no robot {robot_name(project, name)!r}")
        return robot_of(row)

    def remove(self, project: str, name: str) -> bool:
        """Delete a robot; ``False`` if there was none."""
        with self._writing() as db:
            return db.execute("DELETE FROM robots WHERE project = ? AND name = ?",
                              (project, name)).rowcount > 0

    def add_secret(self, secret: UserSecret) -> None:
        """Store a user's new CLI secret; RobotError if the label is taken."""
        try:
            with self._writing() as db:
                db.execute(f"INSERT INTO user_secrets ({SECRET_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
                           (secret.id, secret.user, secret.label, secret.secret_hash,
                            secret.created_at))
        except sqlite3.IntegrityError:
            raise RobotExists(f"--name: user {secret.user!r} has a CLI secret called "
                             f"{secret.label!r} already") from None

    def secrets(self, user: str | None = None) -> list[UserSecret]:
        """The CLI secrets (of ``user``)."""
        if user is None:
            rows = self._read(f"SELECT {SECRET_COLUMNS} FROM user_secrets ORDER BY user, label")
        else:
            rows = self._read(f"SELECT {SECRET_COLUMNS} FROM user_secrets WHERE user = ? "
                              "ORDER BY label", (user,))
        return [secret_of(r) for r in rows]

    def secret_by_hash(self, secret_hash: str) -> UserSecret | None:
        """The CLI secret whose hash is ``secret_hash``."""
        rows = self._read(f"SELECT {SECRET_COLUMNS} FROM user_secrets WHERE secret_hash = ?",
                          (secret_hash,))
        return secret_of(rows[0]) if rows else None

    def secret_by_id(self, secret_id: str) -> UserSecret | None:
        """The CLI secret ``secret_id``."""
        rows = self._read(f"SELECT {SECRET_COLUMNS} FROM user_secrets WHERE id = ?",
                          (secret_id,))
        return secret_of(rows[0]) if rows else None

    def remove_secret(self, user: str, id_or_label: str) -> bool:
        """Revoke a secret of ``user`` by id or label."""
        with self._writing() as db:
            return db.execute("DELETE FROM user_secrets WHERE user = ? AND (id = ? OR "
                              "label = ?)", (user, id_or_label, id_or_label)).rowcount > 0

    def generation(self) -> int:
        """The change counter."""
        rows = self._read("SELECT generation FROM robot_state WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
