"""Where projects and their members are kept: the :class:`ProjectStore` seam and its SQLite
implementation, ``<root>/projects.db`` (its own database file; PostgreSQL: see
:mod:`registry.projects.postgres`).

Every write bumps a one-row change counter (:meth:`ProjectStore.generation`), so readers
that cache the projects (the authorizer) learn of a change with one primary-key read. The
file is made by the first write: a root that never had a project has no ``projects.db``
and reads as empty.

Schema, version 1::

    projects(name PK, public, quota NULL, created_at)
    project_members(project → projects ON DELETE CASCADE, name, role)  PK (project, name)
    project_generation(id = 0 PK, n)
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from layerstore import sqlitedb
from registry.projects.model import Member, Project, ProjectExists, ProjectNotFound

FILE_NAME = "projects.db"

SCHEMA = sqlitedb.Schema(
    what="project database",
    version=1,
    create=(
        "CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT",
        "CREATE TABLE projects (name TEXT PRIMARY KEY, public INTEGER NOT NULL, "
        "quota INTEGER, created_at REAL NOT NULL) WITHOUT ROWID, STRICT",
        "CREATE TABLE project_members (project TEXT NOT NULL REFERENCES projects (name) "
        "ON DELETE CASCADE, name TEXT NOT NULL, role TEXT NOT NULL, "
        "PRIMARY KEY (project, name)) WITHOUT ROWID, STRICT",
        "CREATE TABLE project_generation (id INTEGER PRIMARY KEY CHECK (id = 0), "
        "n INTEGER NOT NULL) STRICT",
        "INSERT INTO project_generation (id, n) VALUES (0, 0)",
    ),
)


class ProjectStore(Protocol):
    """The projects and their members."""

    def generation(self) -> int:
        """A counter every write increases (0 for an empty store)."""
        ...

    def projects(self) -> list[Project]:
        """Every project, by name."""
        ...

    def get(self, name: str) -> Project | None:
        """One project, or ``None``."""
        ...

    def create(self, project: Project) -> None:
        """Add a project; ProjectExists if its name is taken."""
        ...

    def update(self, project: Project) -> None:
        """Replace a project's ``public`` and ``quota``; ProjectNotFound if missing."""
        ...

    def delete(self, name: str) -> bool:
        """Remove a project and its members; whether it existed."""
        ...

    def members(self, project: str | None = None) -> list[Member]:
        """The members of ``project`` (every project's with ``None``), by project and name."""
        ...

    def set_member(self, member: Member) -> bool:
        """Add a member or change its role; True if it was added. ProjectNotFound if the
        project is missing."""
        ...

    def remove_member(self, project: str, name: str) -> bool:
        """Remove a member; whether it was one."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...


def _project(row: tuple[object, ...]) -> Project:
    name, public, quota, created = row
    return Project(str(name), bool(public), None if quota is None else int(str(quota)),
                   float(str(created)))


class SqliteProjectStore:
    """:class:`ProjectStore` in ``<root>/projects.db`` (module docstring)."""

    def __init__(self, root: Path) -> None:
        self.path = root / FILE_NAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self, create: bool) -> sqlite3.Connection | None:
        if self._conn is None:
            if not create and not self.path.exists():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlitedb.open_database(self.path, SCHEMA)
        return self._conn

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            conn = self._connection(create=False)
            return [] if conn is None else conn.execute(sql, args).fetchall()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection(create=True)
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("UPDATE project_generation SET n = n + 1 WHERE id = 0")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def generation(self) -> int:
        """A counter every write increases (0 for an empty store)."""
        rows = self._rows("SELECT n FROM project_generation WHERE id = 0")
        return int(str(rows[0][0])) if rows else 0

    def projects(self) -> list[Project]:
        """Every project, by name."""
        return [_project(r) for r in self._rows(
            "SELECT name, public, quota, created_at FROM projects ORDER BY name")]

    def get(self, name: str) -> Project | None:
        """One project, or ``None``."""
        rows = self._rows("SELECT name, public, quota, created_at FROM projects "
                          "WHERE name = ?", (name,))
        return _project(rows[0]) if rows else None

    def create(self, project: Project) -> None:
        """Add a project; ProjectExists if its name is taken."""
        try:
            with self._write() as conn:
                conn.execute("INSERT INTO projects (name, public, quota, created_at) "
                             "VALUES (?, ?, ?, ?)", (project.name, int(project.public),
                                                     project.quota,
                                                     project.created_at or time.time()))
        except sqlite3.IntegrityError:
            raise ProjectExists(f"project {project.name!r} exists already") from None

    def update(self, project: Project) -> None:
        """Replace a project's ``public`` and ``quota``; ProjectNotFound if missing."""
        with self._write() as conn:
            done = conn.execute("UPDATE projects SET public = ?, quota = ? WHERE name = ?",
                                (int(project.public), project.quota, project.name))
            if done.rowcount == 0:
                raise ProjectNotFound(f"project {project.name!r} does not exist")

    def delete(self, name: str) -> bool:
        """Remove a project and its members; whether it existed."""
        if self.get(name) is None:
            return False
        with self._write() as conn:
            return conn.execute("DELETE FROM projects WHERE name = ?", (name,)).rowcount > 0

    def members(self, project: str | None = None) -> list[Member]:
        """The members of ``project`` (every project's with ``None``), by project and name."""
        if project is None:
            rows = self._rows("SELECT project, name, role FROM project_members "
                              "ORDER BY project, name")
        else:
            rows = self._rows("SELECT project, name, role FROM project_members "
                              "WHERE project = ? ORDER BY name", (project,))
        return [Member(str(p), str(n), str(r)) for p, n, r in rows]

    def set_member(self, member: Member) -> bool:
        """Add a member or change its role; True if it was added."""
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM projects WHERE name = ?",
                            (member.project,)).fetchone() is None:
                raise ProjectNotFound(f"project {member.project!r} does not exist")
            before = conn.execute("SELECT 1 FROM project_members WHERE project = ? AND "
                                  "name = ?", (member.project, member.name)).fetchone()
            conn.execute("INSERT INTO project_members (project, name, role) VALUES (?, ?, ?) "
                         "ON CONFLICT (project, name) DO UPDATE SET role = excluded.role",
                         (member.project, member.name, member.role))
            return before is None

    def remove_member(self, project: str, name: str) -> bool:
        """Remove a member; whether it was one."""
        if not self._rows("SELECT 1 FROM project_members WHERE project = ? AND name = ?",
                          (project, name)):
            return False
        with self._write() as conn:
            return conn.execute("DELETE FROM project_members WHERE project = ? AND name = ?",
                                (project, name)).rowcount > 0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
