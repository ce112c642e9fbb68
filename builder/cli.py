"""The ``pybuild`` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pybuild``; the builder is not built yet."""
    print("pybuild: not built yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
