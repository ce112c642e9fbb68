"""Versioned schema migrations of the PostgreSQL metadata store.

Each ``NNNN_name.sql`` file takes the schema from version ``NNNN - 1`` to ``NNNN``; they are
applied in order, each in the same transaction as its ``schema_version`` row (see
:mod:`registry.metadata.migrate`). A shipped file is never edited: a change is a new file.
"""
