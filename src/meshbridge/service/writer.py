"""Write rendered manifests to a directory, replacing it whole: nothing stale survives.

The new tree is written beside the target and swapped in with renames, so a failed write leaves
the old tree in place. A directory that holds files but no meshbridge marker is refused: it may be
somebody's work, and ``render -o`` must never wipe it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from meshbridge.errors import OutputError

MARKER = ".meshbridge-render"
MARKER_TEXT = "Written by `meshbridge render`; this directory is replaced whole on every render.\n"


def write_tree(target: Path, files: Mapping[str, tuple[bytes, bool]]) -> None:
    """Replace ``target`` with exactly ``files`` (relative path -> (bytes, secret))."""
    target = target.expanduser()
    if target.exists():
        if not target.is_dir():
            raise OutputError(f"{target} exists and is not a directory")
        if any(target.iterdir()) and not (target / MARKER).exists():
            raise OutputError(
                f"{target} is not empty and was not written by meshbridge render "
                f"(no {MARKER} file): choose an empty or new directory"
            )
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create {parent}: {exc.strerror}") from exc
    try:
        _fill(staging, files)
        _swap(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise OutputError(f"cannot write {target}: {exc.strerror}") from exc


def _fill(root: Path, files: Mapping[str, tuple[bytes, bool]]) -> None:
    os.chmod(root, 0o755)  # noqa: S103 - manifests are not secret; Secret files are 0600
    (root / MARKER).write_text(MARKER_TEXT)
    made: set[Path] = set()
    for rel, (data, secret) in sorted(files.items()):
        path = root / rel
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        mode = 0o600 if secret else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)


def _swap(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old.{os.getpid()}")
    target.rename(old)
    try:
        staging.rename(target)
    except OSError:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
