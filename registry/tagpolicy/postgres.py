"""The tag policy rules in the PostgreSQL metadata database (migration
``0007_tag_policies``), shared by every replica: each replica reads them per request, so a
rule added on one applies on all at once."""

from __future__ import annotations

import time

from registry.metadata.postgres import PostgresMetadataStore
from registry.tagpolicy.rules import ImmutableRule, RetentionRule
from registry.tagpolicy.store import (
    IMMUTABLE_COLUMNS,
    RETENTION_COLUMNS,
    _immutable,
    _retention,
)


class PostgresTagPolicyStore:
    """The rules in the tables ``immutable_rules`` and ``retention_rules``."""

    def __init__(self, store: PostgresMetadataStore) -> None:
        """Use the connection pool of ``store`` (not closed by :meth:`close`)."""
        self.store = store
        self.location = f"metadata_url {store.url}"

    def add_immutable(self, rule: ImmutableRule) -> ImmutableRule:
        """Store ``rule``; the stored rule with its id."""
        now = time.time()
        with self.store.connection() as conn:
            row = conn.execute(
                "INSERT INTO immutable_rules (project, repositories, tags, created_at) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                (rule.project, rule.repositories, rule.tags, now)).fetchone()
        assert row is not None
        return ImmutableRule(int(row[0]), rule.project, rule.repositories, rule.tags, now)

    def immutable_rules(self, project: str | None = None) -> list[ImmutableRule]:
        """The immutability rules of ``project`` (every project with ``None``)."""
        with self.store.connection() as conn:
            rows = conn.execute(
                f"SELECT {IMMUTABLE_COLUMNS} FROM immutable_rules "
                "WHERE %(p)s::text IS NULL OR project = %(p)s ORDER BY id",
                {"p": project}).fetchall()
        return [_immutable(row) for row in rows]

    def remove_immutable(self, project: str, rule_id: int) -> bool:
        """Remove an immutability rule of ``project``; whether it existed."""
        with self.store.connection() as conn:
            return conn.execute("DELETE FROM immutable_rules WHERE project = %s AND id = %s",
                                (project, rule_id)).rowcount > 0

    def add_retention(self, rule: RetentionRule) -> RetentionRule:
        """Store ``rule``; the stored rule with its id."""
        now = time.time()
        with self.store.connection() as conn:
            row = conn.execute(
                "INSERT INTO retention_rules (project, repositories, tags, kind, count, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (rule.project, rule.repositories, rule.tags, rule.kind, rule.count,
                 now)).fetchone()
        assert row is not None
        return RetentionRule(int(row[0]), rule.project, rule.repositories, rule.tags,
                             rule.kind, rule.count, now)

    def retention_rules(self, project: str | None = None) -> list[RetentionRule]:
        """The retention rules of ``project`` (every project with ``None``)."""
        with self.store.connection() as conn:
            rows = conn.execute(
                f"SELECT {RETENTION_COLUMNS} FROM retention_rules "
                "WHERE %(p)s::text IS NULL OR project = %(p)s ORDER BY id",
                {"p": project}).fetchall()
        return [_retention(row) for row in rows]

    def remove_retention(self, project: str, rule_id: int) -> bool:
        """Remove a retention rule of ``project``; whether it existed."""
        with self.store.connection() as conn:
            return conn.execute("DELETE FROM retention_rules WHERE project = %s AND id = %s",
                                (project, rule_id)).rowcount > 0

    def close(self) -> None:
        """Nothing to release: the pool belongs to the metadata store."""
