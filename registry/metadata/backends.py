"""Opening the metadata store the settings name: SQLite under ``root`` (``metadata_url``
empty) or PostgreSQL (``metadata_url = "postgresql://…"``)."""

from __future__ import annotations

from registry.config import Settings
from registry.metadata.store import MetadataStore


def open_metadata(settings: Settings, *, migrate: bool = False) -> MetadataStore:
    """The metadata store of ``settings``. SQLite always creates or upgrades its schema;
    PostgreSQL applies missing migrations only with ``migrate`` (``registry migrate`` and
    the serving process do), otherwise it checks that none is missing."""
    if not settings.metadata_url:
        from registry.metadata.sqlite import SqliteMetadataStore

        return SqliteMetadataStore(settings.metadata_path)
    from registry.metadata.postgres import PostgresMetadataStore

    return PostgresMetadataStore(settings.metadata_url, migrate=migrate)


def describe(settings: Settings) -> str:
    """Where the metadata lives, for messages (no password)."""
    if not settings.metadata_url:
        return f"SQLite {settings.metadata_path}"
    from registry.metadata.postgres import redact

    return f"metadata_url {redact(settings.metadata_url)}"
