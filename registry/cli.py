"""The ``registry`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``registry``; the server is not built yet."""
    print("registry: not built yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
