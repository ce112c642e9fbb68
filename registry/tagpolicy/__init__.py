"""Tag policies of projects: immutable tags (a push may not move, a delete may not remove a
tag an immutability rule matches) and retention (which tagged manifests a run keeps, the rest
it removes). The project of a repository is its first path segment; rules name repositories
by the rest of the path.

:mod:`.patterns` matches names, :mod:`.rules` holds the rule values and their checks,
:mod:`.store` keeps them (SQLite or PostgreSQL), :mod:`.service` is what the CLI, the API and
the request handlers call, :mod:`.retention` plans and applies a retention run.
"""
