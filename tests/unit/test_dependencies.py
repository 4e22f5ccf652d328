"""Every library src/ imports is a dependency pyproject.toml declares, not one that happens to
arrive with another (a declared dependency can drop it, and the import then fails for users)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported_top_levels() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src" / "meshbridge").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {
        re.split(r"[\s\[<>=~!;]", req, maxsplit=1)[0].lower().replace("_", "-")
        for req in project["dependencies"]
    }


def test_every_imported_library_is_declared() -> None:
    distributions = importlib.metadata.packages_distributions()
    declared = _declared()
    undeclared = {}
    for top, where in _imported_top_levels().items():
        if top in sys.stdlib_module_names or top == "meshbridge":
            continue
        dists = {d.lower().replace("_", "-") for d in distributions.get(top, [top])}
        if not dists & declared:
            undeclared[top] = where
    assert undeclared == {}
