"""Shared fixtures: the CLI run in-process with its state store in the test's tmp_path."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from meshbridge.cli import app  # noqa: E402


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Run ``meshbridge ARGS`` in-process, with the state store under tmp_path by default."""
    monkeypatch.setenv("MESHBRIDGE_STATE", str(tmp_path / "state" / "state.db"))
    monkeypatch.delenv("MESHBRIDGE_STATE_KEY", raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, input: str | None = None) -> Run:
        result = CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)
        return Run(result.exit_code, result.stdout, result.stderr)

    return run
