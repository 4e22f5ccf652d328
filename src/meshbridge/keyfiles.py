"""Directories and files that hold private keys: 0700 and 0600, whatever the umask.

``mkdir`` and ``open`` take away the process umask from the mode they are given, and
``mkdir(parents=True)`` gives the parents it makes no mode at all: under umask 000 they are
0777, so anyone may rename or replace what they hold, and under an unusual umask (0277) a key
file would be 0400 and a key directory 0500. So every directory meshbridge makes on the way to
a key file — the state store's, a secrets tree, a ``pki export`` directory — and every key file
is given its mode explicitly, after it is made. Directories that already exist are left as
their owner set them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["KEY_DIR", "KEY_FILE", "make_key_dirs", "open_key_file"]

KEY_DIR = 0o700
KEY_FILE = 0o600


def make_key_dirs(path: Path) -> None:
    """``path`` and every directory above it that is missing, each made 0700 (OSError as
    ``mkdir`` raises it; a directory another process makes meanwhile is taken as it is)."""
    missing: list[Path] = []
    at = path
    while not os.path.lexists(at) and at != at.parent:
        missing.append(at)
        at = at.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=KEY_DIR)
        except FileExistsError:
            continue
        os.chmod(directory, KEY_DIR)
    if not path.is_dir():
        raise NotADirectoryError(20, "Not a directory", str(path))


def open_key_file(path: Path | str, flags: int) -> int:
    """``os.open(path, flags)`` of a file holding a key: created 0600, and set to 0600 at once
    whatever the umask (also when it existed: give ``O_CREAT``, with or without ``O_EXCL``)."""
    fd = os.open(path, flags, KEY_FILE)
    try:
        os.fchmod(fd, KEY_FILE)
    except OSError:
        os.close(fd)
        raise
    return fd
