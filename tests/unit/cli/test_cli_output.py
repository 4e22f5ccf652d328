"""What a user reads: results on stdout and diagnostics on stderr (as kubectl does), help
without type placeholders, counts that agree with their nouns, what ``-f`` reads, and empty
input refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer
import yaml
from helpers import EXAMPLES, write_docs

from meshbridge.cli import app
from meshbridge.plural import count

PLACEHOLDERS = ("<bool>", "<path>", "<str>", "<int", "<float", "TEXT", "INTEGER", "FLOAT")


def _command_paths(command: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    if hasattr(command, "commands"):  # a group (typer carries its own copy of click)
        for name, sub in sorted(command.commands.items()):
            paths += _command_paths(sub, (*prefix, name))
    return paths


def test_help_shows_no_type_placeholders(cli) -> None:
    paths = _command_paths(typer.main.get_command(app))
    assert ("pki", "rotate-root") in paths and ("apply",) in paths
    for path in paths:
        result = cli(*path, "--help")
        assert result.exit_code == 0, (path, result.stderr)
        options = result.stdout.split("Options ")[-1]  # typer types arguments regardless
        shown = [p for p in PLACEHOLDERS if p in options]
        assert shown == [], (path, shown)
    flags = cli("apply", "--help").stdout
    assert "--dry-run " in flags and "--parallel                 N " in flags


def test_help_paragraphs_run_on_rather_than_break_where_the_source_does(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """render's docstring breaks its second paragraph after "are left"; on a wide terminal the
    help runs the paragraph on to the terminal's width (typer alone keeps the source's breaks)."""
    monkeypatch.setenv("COLUMNS", "200")
    lines = [line.strip() for line in cli("render", "--help").stdout.splitlines()]
    start = next(line for line in lines if line.startswith("The Secrets that hold"))
    assert "are left out of it, since it is meant for Git" in start, lines
    assert not any(line.endswith("are left") for line in lines), lines


def test_results_go_to_stdout_and_diagnostics_to_stderr(cli, tmp_path: Path) -> None:
    valid = cli("validate", "-f", str(EXAMPLES / "sleep-httpbin"))
    assert valid.exit_code == 0
    assert valid.stdout.strip() == "valid: 6 documents" and valid.stderr == ""

    rendered = cli("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(tmp_path / "o"))
    assert rendered.exit_code == 0, rendered.stderr
    assert "objects per cluster: " in rendered.stdout and "wrote " in rendered.stdout
    assert "for 2 clusters" in rendered.stdout
    assert "left out" in rendered.stderr and "wrote" not in rendered.stderr  # advice, not result

    bad = cli("validate", "-f", "-", input="kind: Nope\n")
    assert bad.exit_code == 2 and bad.stdout == ""
    assert "error: 2 problems found; nothing was written" in bad.stderr


def test_counts_agree_with_their_nouns(cli, tmp_path: Path) -> None:
    assert [count(0, "cluster"), count(1, "cluster"), count(2, "cluster")] == [
        "0 clusters", "1 cluster", "2 clusters"]
    assert count(1, "new VIP") == "1 new VIP"
    assert count(2, "Secret holding a key", "Secrets holding keys") == "2 Secrets holding keys"
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "egress" / "mesh.yaml").read_text())
            if d["metadata"]["name"] in ("cluster1", "mysql")]
    src = write_docs(tmp_path / "in" / "mesh.yaml", docs)
    assert cli("validate", "-f", str(src)).stdout.strip() == "valid: 2 documents"
    one = cli("render", "-f", str(src), "-o", str(tmp_path / "o"))
    assert one.exit_code == 0, one.stderr
    assert "for 1 cluster to" in one.stdout and "(1 new VIP)" in one.stdout
    lone = write_docs(tmp_path / "lone" / "mesh.yaml", docs[:1])
    assert cli("validate", "-f", str(lone)).stdout.strip() == "valid: 1 document"


def test_a_directory_gives_its_own_yaml_files_and_never_rendered_output(
    cli, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    shutil.copytree(EXAMPLES / "sleep-httpbin", work)
    assert cli("validate", "-f", str(work)).stdout.strip() == "valid: 6 documents"
    # render into a folder under the intents: its manifests are never read back as intents
    first = cli("render", "-f", str(work), "-o", str(work / "out"), "--include-secrets")
    assert first.exit_code == 0, first.stderr
    assert any((work / "out").rglob("*.yaml"))
    (work / "notes").mkdir()
    (work / "notes" / "draft.yaml").write_text("kind: NotAnIntent\n")  # subfolders: not read
    again = cli("render", "-f", str(work), "-o", str(work / "out"))
    assert again.exit_code == 0, again.stderr
    assert cli("validate", "-f", str(work)).stdout.strip() == "valid: 6 documents"
    # the output folder given as input is refused by name, not read as intents
    refused = cli("validate", "-f", str(work / "out"))
    assert refused.exit_code == 2
    assert "written by meshbridge render" in refused.stderr


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n"])
def test_empty_input_is_an_error(cli, tmp_path: Path, text: str) -> None:
    piped = cli("validate", "-f", "-", input=text)
    assert piped.exit_code == 2 and piped.stdout == ""
    assert "<stdin>#0 document: no intent document in the input (it is empty)" in piped.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text(text)
    render = cli("render", "-f", str(empty), "-o", str(tmp_path / "o"))
    assert render.exit_code == 2
    assert f"{empty}#0 document: no intent document" in render.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "state").exists()
