"""Shared fixtures: the CLI run in-process, and paths to the examples."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from meshbridge.cli import app  # noqa: E402

EXAMPLES = ROOT / "examples"


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``meshbridge ARGS`` in-process, with the state store under tmp_path by default."""
    monkeypatch.setenv("MESHBRIDGE_STATE", str(tmp_path / "state" / "state.db"))
    monkeypatch.setenv("MESHBRIDGE_STATE_KEY", "")
    monkeypatch.delenv("MESHBRIDGE_STATE_KEY")
    monkeypatch.chdir(tmp_path)

    def run(*args: str, input: str | None = None) -> Run:
        result = CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


def write_docs(path: Path, docs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def read_tree(root: Path) -> dict[str, list[dict]]:
    """Relative path -> parsed documents, for every YAML file below root."""
    return {
        str(p.relative_to(root)): [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
        for p in sorted(root.rglob("*.yaml"))
    }
