"""The :class:`~registry.projects.store.ProjectStore` in the PostgreSQL metadata database
(``metadata_url``), so that every replica sees the same projects: the tables of migration
``0004_projects.sql``, through the shared pool of :mod:`registry.auth.shared_state`."""

from __future__ import annotations

import time

from psycopg import errors as pg_errors

from registry.metadata.postgres import PostgresMetadataStore
from registry.projects.model import Member, Project, ProjectExists, ProjectNotFound

_BUMP = "UPDATE project_generation SET n = n + 1 WHERE id = 0"


def _project(row: tuple[object, ...]) -> Project:
    name, public, quota, created = row
    return Project(str(name), bool(public), None if quota is None else int(str(quota)),
                   float(str(created)))


class PostgresProjectStore:
    """Projects and members in PostgreSQL (module docstring)."""

    def __init__(self, store: PostgresMetadataStore) -> None:
        self.store = store
        self.location = f"metadata_url {store.url}"

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self.store.connection() as conn:
            return list(conn.execute(sql, args).fetchall())

    def generation(self) -> int:
        """A counter every write increases."""
        rows = self._rows("SELECT n FROM project_generation WHERE id = 0")
        return int(str(rows[0][0])) if rows else 0

    def projects(self) -> list[Project]:
        """Every project, by name."""
        return [_project(r) for r in self._rows(
            "SELECT name, public, quota, created_at FROM projects ORDER BY name")]

    def get(self, name: str) -> Project | None:
        """One project, or ``None``."""
        rows = self._rows("SELECT name, public, quota, created_at FROM projects "
                          "WHERE name = %s", (name,))
        return _project(rows[0]) if rows else None

    def create(self, project: Project) -> None:
        """Add a project; ProjectExists if its name is taken."""
        try:
            with self.store.connection() as conn, conn.transaction():
                conn.execute("INSERT INTO projects (name, public, quota, created_at) "
                             "VALUES (%s, %s, %s, %s)",
                             (project.name, project.public, project.quota,
                              project.created_at or time.time()))
                conn.execute(_BUMP)
        except pg_errors.UniqueViolation:
            raise ProjectExists(f"project {project.name!r} exists already") from None

    def update(self, project: Project) -> None:
        """Replace a project's ``public`` and ``quota``; ProjectNotFound if missing."""
        with self.store.connection() as conn, conn.transaction():
            done = conn.execute("UPDATE projects SET public = %s, quota = %s WHERE name = %s",
                                (project.public, project.quota, project.name))
            if done.rowcount == 0:
                raise ProjectNotFound(f"project {project.name!r} does not exist")
            conn.execute(_BUMP)

    def delete(self, name: str) -> bool:
        """Remove a project and its members; whether it existed."""
        with self.store.connection() as conn, conn.transaction():
            gone = conn.execute("DELETE FROM projects WHERE name = %s", (name,)).rowcount > 0
            if gone:
                conn.execute(_BUMP)
            return gone

    def members(self, project: str | None = None) -> list[Member]:
        """The members of ``project`` (every project's with ``None``)."""
        if project is None:
            rows = self._rows("SELECT project, name, role FROM project_members "
                              "ORDER BY project, name")
        else:
            rows = self._rows("SELECT project, name, role FROM project_members "
                              "WHERE project = %s ORDER BY name", (project,))
        return [Member(str(p), str(n), str(r)) for p, n, r in rows]

    def set_member(self, member: Member) -> bool:
        """Add a member or change its role; True if it was added."""
        with self.store.connection() as conn, conn.transaction():
            if conn.execute("SELECT 1 FROM projects WHERE name = %s FOR SHARE",
                            (member.project,)).fetchone() is None:
                raise ProjectNotFound(f"project {member.project!r} does not exist")
            row = conn.execute(
                "INSERT INTO project_members (project, name, role) VALUES (%s, %s, %s) "
                "ON CONFLICT (project, name) DO UPDATE SET role = excluded.role "
                "RETURNING (xmax = 0)", (member.project, member.name, member.role)).fetchone()
            conn.execute(_BUMP)
            return bool(row and row[0])

    def remove_member(self, project: str, name: str) -> bool:
        """Remove a member; whether it was one."""
        with self.store.connection() as conn, conn.transaction():
            gone = conn.execute("DELETE FROM project_members WHERE project = %s AND name = %s",
                                (project, name)).rowcount > 0
            if gone:
                conn.execute(_BUMP)
            return gone

    def close(self) -> None:
        """Nothing to close: the connections belong to the shared pool."""
