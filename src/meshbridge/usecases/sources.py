"""Where intent documents come from: files, directories, or stdin (``-f FILE|DIR|-``).

A directory gives the *.yaml and *.yml files directly in it, in name order; its subdirectories
are not read (as ``kubectl apply -f DIR`` without ``-R``). So ``render -f . -o out`` never reads
its own output back as intents, and a directory that ``render`` wrote (it holds the
``.meshbridge-render`` marker) is refused as input by name.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from meshbridge.errors import InvalidInput, Problem
from meshbridge.limits import FILES
from meshbridge.source import Source

STDIN = "-"
RENDER_MARKER = ".meshbridge-render"  # output.writer.MARKER; not imported, to keep start-up light
_TOO_LARGE = f"larger than {FILES.bytes:,} bytes: not read (docs/server.md, \"Limits\")"


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
            text = stream.read(FILES.bytes + 1)  # characters: at least as many bytes
            if len(text) > FILES.bytes:
                problems.append(_problem("<stdin>", _TOO_LARGE))
            else:
                sources.append(Source("<stdin>", text))
            continue
        path = Path(raw).expanduser()
        if path.is_dir():
            if (path / RENDER_MARKER).exists():
                problems.append(
                    _problem(
                        raw,
                        f"a directory written by meshbridge render (it holds {RENDER_MARKER}), "
                        "not intents",
                    )
                )
                continue
            found = sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
            )
            if not found:
                problems.append(
                    _problem(
                        raw,
                        "directory holds no *.yaml or *.yml file (its subdirectories are not read)",
                    )
                )
            for p in found:
                _read(p, str(p), sources, problems)
        else:
            _read(path, raw, sources, problems)
    if problems:
        raise InvalidInput(problems)
    return sources


def _read(path: Path, name: str, sources: list[Source], problems: list[Problem]) -> None:
    try:
        with path.open("rb") as file:
            data = file.read(FILES.bytes + 1)  # no further: -f /dev/zero ends too
        if len(data) > FILES.bytes:
            problems.append(_problem(name, _TOO_LARGE))
            return
        text = data.decode("utf-8")
        if "\r" in text:  # as a file read as text is: universal newlines
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        sources.append(Source(name, text))
    except FileNotFoundError:
        problems.append(_problem(name, "no such file or directory"))
    except UnicodeDecodeError:
        problems.append(_problem(name, "not UTF-8 text"))
    except OSError as exc:
        problems.append(_problem(name, f"cannot read: {exc.strerror}"))
