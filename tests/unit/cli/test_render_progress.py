"""What a long render shows while it runs and when it is done: progress on a terminal only, a
summary whose length does not grow with the mesh, the per-cluster list with -v."""

from __future__ import annotations

import io
from pathlib import Path

import yaml
from bench.meshgen import generate
from rich.console import Console

from meshbridge.cli.progress import TerminalProgress, shown
from meshbridge.progress import SILENT

STAGES = ("reading intents", "serialising clusters", "writing files", "replacing the previous")


def _mesh(tmp_path: Path, clusters: int) -> Path:
    src = tmp_path / f"mesh{clusters}.yaml"
    src.write_text(yaml.safe_dump_all(generate(clusters=clusters, servers=2 * clusters)))
    return src


def test_render_into_a_pipe_shows_no_progress_and_a_short_summary(cli, tmp_path: Path) -> None:
    small = cli("render", "-f", str(_mesh(tmp_path, 3)), "-o", str(tmp_path / "small"))
    large = cli("render", "-f", str(_mesh(tmp_path, 12)), "-o", str(tmp_path / "large"))
    assert small.exit_code == 0, small.stderr
    assert large.exit_code == 0, large.stderr
    for run in (small, large):
        assert not any(stage in run.stderr for stage in STAGES), run.stderr
        assert "\x1b[" not in run.stderr, "terminal control codes written to a pipe"
        assert "c000:" not in run.stdout + run.stderr, "per-cluster lines without -v"
    assert len(large.stdout.splitlines()) == len(small.stdout.splitlines())
    assert "for 12 clusters" in large.stdout


def test_verbose_lists_every_cluster(cli, tmp_path: Path) -> None:
    result = cli("render", "-v", "-f", str(_mesh(tmp_path, 4)), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.stderr
    listed = [line.split(":")[0] for line in result.stdout.splitlines() if " objects" in line]
    assert listed == ["c000", "c001", "c002", "c003"]


def test_validate_into_a_pipe_shows_no_progress(cli, tmp_path: Path) -> None:
    result = cli("validate", "-f", str(_mesh(tmp_path, 3)))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout.startswith("valid: ")


def test_progress_is_drawn_on_a_terminal_only() -> None:
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=100)
    with shown(console) as progress:
        assert isinstance(progress, TerminalProgress)
        progress.stage("serialising clusters", 3)
        progress.advance(2)
    assert "serialising clusters" in terminal.getvalue()

    pipe = io.StringIO()
    with shown(Console(file=pipe, force_terminal=False)) as progress:
        assert progress is SILENT
        progress.stage("serialising clusters", 3)
    assert pipe.getvalue() == ""
