"""Robot accounts for CI (``robot$project+name``, a secret, actions on one project's
repositories) and users' revocable CLI secrets: values, stores (SQLite and PostgreSQL), the
service the CLI and the management API call, and the ``registry robot`` commands."""
