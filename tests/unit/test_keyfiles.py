"""Directories and files holding keys (keyfiles.py) get their modes whatever the umask: under
umask 000 ``mkdir(parents=True)`` made the parents 0777, and an odd umask (0277) would make a
key file 0400 and its directory 0500."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshbridge.keyfiles import make_key_dirs, open_key_file


@pytest.fixture(params=[0o000, 0o277])
def odd_umask(request: pytest.FixtureRequest):
    previous = os.umask(request.param)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_every_directory_made_on_the_way_to_a_key_is_0700(tmp_path: Path, odd_umask: None) -> None:
    os.chmod(tmp_path, 0o755)
    make_key_dirs(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert mode(tmp_path) == 0o755  # what existed is left as its owner set it
    make_key_dirs(tmp_path / "a" / "b" / "c")  # again: nothing to do, no error


def test_a_key_file_is_0600(tmp_path: Path, odd_umask: None) -> None:
    fd = open_key_file(tmp_path / "k", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)
    assert mode(tmp_path / "k") == 0o600


def test_a_file_where_a_key_directory_goes_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_key_dirs(tmp_path / "f")
    with pytest.raises(NotADirectoryError):
        make_key_dirs(tmp_path / "f" / "g")
