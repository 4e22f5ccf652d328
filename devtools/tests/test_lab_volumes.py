"""The kubelet stand-in's atomic update (meshbridge_dev.lab.programs.volumes), on files: what
istiod reads from its ``cacerts`` folder is always one whole version of the Secret."""

from __future__ import annotations

import os
from pathlib import Path

from meshbridge_dev.lab.programs.volumes import DATA, current, write_atomically


def versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("..2"))


def test_each_key_is_a_link_through_data_to_one_version(tmp_path: Path) -> None:
    folder = tmp_path / "cacerts"
    write_atomically(folder, {"ca-cert.pem": b"one", "root-cert.pem": b"root"})
    assert os.readlink(folder / "ca-cert.pem") == f"{DATA}/ca-cert.pem"
    assert (folder / "ca-cert.pem").read_bytes() == b"one"
    (version,) = versions(folder)
    assert os.readlink(folder / DATA) == version
    assert oct((folder / DATA / "ca-cert.pem").stat().st_mode & 0o777) == "0o644"
    assert current(folder) == {"ca-cert.pem": b"one", "root-cert.pem": b"root"}


def test_an_update_swaps_every_file_at_once_and_drops_the_old_version(tmp_path: Path) -> None:
    folder = tmp_path / "cacerts"
    write_atomically(folder, {"ca-cert.pem": b"one", "old.pem": b"gone soon"})
    (first,) = versions(folder)
    link = os.lstat(folder / "ca-cert.pem")
    write_atomically(folder, {"ca-cert.pem": b"two", "new.pem": b"new"})
    (second,) = versions(folder)
    assert second != first, "the new version went into the old folder"
    assert os.readlink(folder / DATA) == second
    # the key's own link is not rewritten: it reads the new file through ..data
    assert os.lstat(folder / "ca-cert.pem").st_ino == link.st_ino
    assert (folder / "ca-cert.pem").read_bytes() == b"two"
    assert not (folder / "old.pem").exists() and not os.path.lexists(folder / "old.pem")
    assert (folder / "new.pem").read_bytes() == b"new"
    assert current(folder) == {"ca-cert.pem": b"two", "new.pem": b"new"}


def test_nothing_is_delivered_before_the_first_content(tmp_path: Path) -> None:
    assert current(tmp_path / "cacerts") is None
