"""Which :class:`~registry.projects.store.ProjectStore` a registry uses: ``<root>/projects.db``,
or the PostgreSQL metadata database when ``metadata_url`` is set."""

from __future__ import annotations

from registry.config import Settings
from registry.projects.store import ProjectStore, SqliteProjectStore


def open_project_store(settings: Settings, *, migrate: bool = False) -> ProjectStore:
    """The project store of ``settings`` (``migrate``: create PostgreSQL's schema first if
    needed)."""
    if not settings.metadata_url:
        return SqliteProjectStore(settings.root)
    from registry.auth.shared_state import shared_store
    from registry.projects.postgres import PostgresProjectStore

    return PostgresProjectStore(shared_store(settings, migrate=migrate))


def describe_store(store: ProjectStore) -> str:
    """Where ``store`` keeps the projects, for messages."""
    return str(getattr(store, "location", None) or getattr(store, "path", "the project store"))
