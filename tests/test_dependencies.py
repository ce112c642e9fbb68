"""The package arrows point one way: builder → registry.client/layerstore, registry → layerstore."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "layerstore": ("registry", "builder"),
    "registry": ("builder",),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_packages_import_only_downstream() -> None:
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, name in _imports(path):
                top = name.split(".")[0]
                if top in forbidden:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "dependency direction broken:\n" + "\n".join(bad)


def test_builder_uses_only_the_registry_client() -> None:
    bad = []
    for path in sorted((ROOT / "builder").rglob("*.py")):
        for line, name in _imports(path):
            if name.startswith("registry") and not name.startswith("registry.client"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "builder may use registry.client only:\n" + "\n".join(bad)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("import os\nfrom registry.client import push\n")
    assert (2, "registry.client") in _imports(sample)


#: The ``pybuild`` entry point parses argv and dispatches to the commands.
_BUILDER_ENTRY_POINTS = {"builder/cli.py"}


def test_builder_library_stays_below_its_commands() -> None:
    """Only ``builder/commands/`` (and the entry point) parse argv: nothing else in builder
    imports ``builder.commands`` or ``argparse``."""
    bad = []
    for path in sorted((ROOT / "builder").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("builder/commands/") or rel in _BUILDER_ENTRY_POINTS:
            continue
        for line, name in _imports(path):
            if name == "argparse" or name == "builder.commands" \
                    or name.startswith("builder.commands."):
                bad.append(f"{rel}:{line} imports {name}")
    assert not bad, "the builder library imports its command layer:\n" + "\n".join(bad)
