"""The :class:`~registry.robots.store.RobotStore` in the PostgreSQL metadata database
(migration ``0005_robots.sql``), used when ``metadata_url`` is set so that every replica
knows the same robots and secrets. Each write bumps ``robot_state.generation`` in its
transaction; :meth:`PostgresRobotStore.generation` reads it at most once a second, so a
disabled robot or revoked secret is refused by every replica within a second even where a
verified credential was remembered (basic auth)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from registry.metadata.postgres import PostgresMetadataStore
from registry.robots.store import (
    ROBOT_COLUMNS,
    check_changes,
    robot_of,
    secret_of,
)
from registry.robots.values import (
    Robot,
    RobotExists,
    RobotNotFound,
    UserSecret,
    robot_name,
)

GENERATION_CACHE_SECONDS = 1.0
_SECRET_COLUMNS = 'id, "user", label, secret_hash, created_at'


class PostgresRobotStore:
    """Robots and CLI secrets in the tables of migration 5 (see the module docstring)."""

    def __init__(self, store: PostgresMetadataStore) -> None:
        self.store = store
        self.location = f"metadata_url {store.url}"
        self._lock = threading.Lock()
        self._generation = (float("-inf"), 0)

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self.store.connection() as conn:
            return conn.execute(sql, args).fetchall()

    @contextmanager
    def _writing(self) -> Iterator[psycopg.Connection]:
        with self.store.connection() as conn, conn.transaction():
            yield conn
            conn.execute("UPDATE robot_state SET generation = generation + 1 WHERE id = 1")
        with self._lock:
            self._generation = (float("-inf"), 0)

    def get(self, project: str, name: str) -> Robot | None:
        """The robot ``name`` of ``project``, if any."""
        rows = self._read(f"SELECT {ROBOT_COLUMNS} FROM robots WHERE project = %s AND "
                          "name = %s", (project, name))
        return robot_of(rows[0]) if rows else None

    def robots(self, project: str | None = None) -> list[Robot]:
        """Every robot (of ``project``), by project and name."""
        if project is None:
            rows = self._read(f"SELECT {ROBOT_COLUMNS} FROM robots ORDER BY project, name")
        else:
            rows = self._read(f"SELECT {ROBOT_COLUMNS} FROM robots WHERE project = %s "
                              "ORDER BY name", (project,))
        return [robot_of(r) for r in rows]

    def add(self, robot: Robot) -> None:
        """Store a new robot; RobotError if its name is taken."""
        try:
            with self._writing() as conn:
                conn.execute(f"INSERT INTO robots ({ROBOT_COLUMNS}) VALUES "
                             "(%s, %s, %s, %s, %s, %s, %s, %s)",
                             (robot.project, robot.name, ",".join(robot.actions),
                              robot.secret_hash, robot.created_at, robot.expires_at,
                              robot.disabled, robot.description))
        except psycopg.errors.UniqueViolation:
            raise RobotExists(f"NAME: robot {robot.full_name!r} exists already") from None

    def update(self, project: str, name: str, **changes: Any) -> Robot:
        """Change some fields of a robot (see the protocol)."""
        check_changes(changes)
        with self._writing() as conn:
            for key, value in changes.items():
                conn.execute(f"UPDATE robots SET {key} = %s WHERE project = %s AND name = %s",
                             (bool(value) if key == "disabled" else value, project, name))
            row = conn.execute(f"SELECT {ROBOT_COLUMNS} FROM robots WHERE project = %s AND "
                               "name = %s", (project, name)).fetchone()
            if row is None:
                raise RobotNotFound(f"no robot {robot_name(project, name)!r}")
        return robot_of(row)

    def remove(self, project: str, name: str) -> bool:
        """Delete a robot; ``False`` if there was none."""
        with self._writing() as conn:
            return conn.execute("DELETE FROM robots WHERE project = %s AND name = %s",
                                (project, name)).rowcount > 0

    def add_secret(self, secret: UserSecret) -> None:
        """Store a user's new CLI secret; RobotError if the label is taken."""
        try:
            with self._writing() as conn:
                conn.execute(f"INSERT INTO user_secrets ({_SECRET_COLUMNS}) VALUES "
                             "(%s, %s, %s, %s, %s)",
                             (secret.id, secret.user, secret.label, secret.secret_hash,
                              secret.created_at))
        except psycopg.errors.UniqueViolation:
            raise RobotExists(f"--name: user {secret.user!r} has a CLI secret called "
                             f"{secret.label!r} already") from None

    def secrets(self, user: str | None = None) -> list[UserSecret]:
        """The CLI secrets (of ``user``)."""
        if user is None:
            rows = self._read(f'SELECT {_SECRET_COLUMNS} FROM user_secrets ORDER BY "user", '
                              "label")
        else:
            rows = self._read(f'SELECT {_SECRET_COLUMNS} FROM user_secrets WHERE "user" = %s '
                              "ORDER BY label", (user,))
        return [secret_of(r) for r in rows]

    def secret_by_hash(self, secret_hash: str) -> UserSecret | None:
        """The CLI secret whose hash is ``secret_hash``."""
        rows = self._read(f"SELECT {_SECRET_COLUMNS} FROM user_secrets WHERE secret_hash = %s",
                          (secret_hash,))
        return secret_of(rows[0]) if rows else None

    def secret_by_id(self, secret_id: str) -> UserSecret | None:
        """The CLI secret ``secret_id``."""
        rows = self._read(f"SELECT {_SECRET_COLUMNS} FROM user_secrets WHERE id = %s",
                          (secret_id,))
        return secret_of(rows[0]) if rows else None

    def remove_secret(self, user: str, id_or_label: str) -> bool:
        """Revoke a secret of ``user`` by id or label."""
        with self._writing() as conn:
            return conn.execute('DELETE FROM user_secrets WHERE "user" = %s AND (id = %s OR '
                                "label = %s)", (user, id_or_label, id_or_label)).rowcount > 0

    def generation(self) -> int:
        """The change counter, read at most once a second."""
        now = time.monotonic()
        with self._lock:
            read_at, value = self._generation
            if now - read_at < GENERATION_CACHE_SECONDS:
                return value
        rows = self._read("SELECT generation FROM robot_state WHERE id = 1")
        value = int(rows[0][0]) if rows else 0
        with self._lock:
            self._generation = (now, value)
        return value

    def close(self) -> None:
        """Nothing to close: the connections belong to the shared pool."""
