"""The lab's one door into meshbridge: reading intents the way meshbridge reads them.

The lab must see exactly the placement meshbridge compiles, so it reads intents with
meshbridge's own source reader, loader and snapshot. Every import of ``meshbridge`` in the
devtools is here (an import-linter contract in devtools/pyproject.toml holds to that): when
meshbridge moves or renames one of these, this file is the one to change.
"""

from __future__ import annotations

from meshbridge.compile.snapshot import Snapshot, build
from meshbridge.loading import load
from meshbridge.usecases.sources import read_sources

__all__ = ["Snapshot", "read_snapshot", "source_texts"]


def read_snapshot(
    paths: list[str], found: dict[tuple[str, str], frozenset[str]] | None = None
) -> Snapshot:
    """The compiled view of the intents in ``paths`` (files, folders or ``-``); ``found``:
    where the Apps with ``discover: {}`` run (the instances the lab deployed)."""
    return build(load(read_sources(paths)), found)


def source_texts(paths: list[str]) -> list[str]:
    """The text of every intent file in ``paths``, as meshbridge finds them."""
    return [source.text for source in read_sources(paths)]
