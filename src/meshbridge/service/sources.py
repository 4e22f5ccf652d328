"""Where intent documents come from: files, directories (every *.yaml / *.yml), or stdin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from meshbridge.errors import InvalidInput, Problem
from meshbridge.source import Source

STDIN = "-"


def _problem(name: str, message: str) -> Problem:
    return Problem(name, 0, "", "", "", message)


def read_sources(paths: list[str], stdin: TextIO | None = None) -> list[Source]:
    """Read every path given with ``-f``; all unreadable paths are reported at once."""
    sources: list[Source] = []
    problems: list[Problem] = []
    if not paths:
        raise InvalidInput([_problem("-f", "no input given: pass -f FILE, -f DIR or -f -")])
    for raw in paths:
        if raw == STDIN:
            stream = stdin if stdin is not None else sys.stdin
            sources.append(Source("<stdin>", stream.read()))
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
            )
            if not found:
                problems.append(_problem(raw, "directory holds no *.yaml or *.yml file"))
            for p in found:
                _read(p, str(p), sources, problems)
        else:
            _read(path, raw, sources, problems)
    if problems:
        raise InvalidInput(problems)
    return sources


def _read(path: Path, name: str, sources: list[Source], problems: list[Problem]) -> None:
    try:
        sources.append(Source(name, path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        problems.append(_problem(name, "no such file or directory"))
    except UnicodeDecodeError:
        problems.append(_problem(name, "not UTF-8 text"))
    except OSError as exc:
        problems.append(_problem(name, f"cannot read: {exc.strerror}"))
