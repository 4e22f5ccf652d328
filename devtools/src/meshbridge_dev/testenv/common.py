"""What every part of the test environment shares: where things are, one error, one log format.

The test environment runs before the project's virtualenv exists (``scripts/test`` builds the
Go tools first), so this package uses only the Python standard library: a test in
``devtools/tests`` imports it with no site-packages at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROG = "k8s-testenv"
DEVTOOLS = Path(__file__).resolve().parents[3]
REPO = DEVTOOLS.parent
# The Go modules the binaries are built from (go.mod + go.sum each, nothing vendored).
PINS = DEVTOOLS / "pins"
LOCK_FILE = ".k8s-testenv.lock"

# A process the environment started, as recorded in its state file: pid, kernel start time,
# log file, command (JSON-friendly, so a later `down` in another process can find it).
Record = dict[str, Any]


class TestenvError(Exception):
    """An error reported to the user as one clear message (exit status 1)."""


def log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    env = os.environ.get("MESHBRIDGE_TESTENV_CACHE")
    return Path(env).resolve() if env else REPO / ".cache" / "testenv"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (serialises concurrent builds / up / down)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
        what: str | None = None) -> str:
    """Run a command, return stdout; raise TestenvError with its stderr on failure."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise TestenvError(f"{cmd[0]}: command not found") from None
    if proc.returncode != 0:
        raise TestenvError(f"{what or ' '.join(cmd)} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout
