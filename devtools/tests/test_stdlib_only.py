"""meshbridge_dev.testenv and meshbridge_dev.suite run before the project's virtualenv exists:
``scripts/test`` (and CI) runs with the system's python3 and builds the Go tools with
``scripts/k8s-testenv`` before it makes .venv. So they may import nothing but the standard
library and themselves; a third-party import would break a fresh machine's first step while
every test in the venv still passed."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

DEVTOOLS = Path(__file__).resolve().parents[1]
REPO = DEVTOOLS.parent
PACKAGE = DEVTOOLS / "src" / "meshbridge_dev"
STDLIB_ONLY = [PACKAGE / "__init__.py", PACKAGE / "suite.py",
               *sorted((PACKAGE / "testenv").glob("*.py"))]


def imported_roots(path: Path) -> set[str]:
    """The top-level names of every absolute import in the file."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_testenv_imports_only_the_standard_library_and_itself() -> None:
    allowed = set(sys.stdlib_module_names) | {"__future__", "meshbridge_dev"}
    outside = {f"{p.relative_to(DEVTOOLS)}: {name}" for p in STDLIB_ONLY
               for name in imported_roots(p) - allowed}
    assert outside == set()


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_such_module_imports_without_site_packages() -> None:
    """Indirect imports too: every module loads under ``python -I -S`` (no site-packages)."""
    modules = ", ".join(repr(module_name(p)) for p in STDLIB_ONLY if p.stem != "__main__")
    code = (f"import importlib, sys; sys.path.insert(0, {str(PACKAGE.parent)!r}); "
            f"[importlib.import_module(m) for m in ({modules},)]")
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_the_entry_point_runs_without_site_packages() -> None:
    proc = subprocess.run([sys.executable, "-I", "-S", str(REPO / "scripts" / "k8s-testenv"),
                           "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "build" in proc.stdout and "up" in proc.stdout
