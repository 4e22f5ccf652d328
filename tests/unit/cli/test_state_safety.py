"""The state store and its key file as a user meets them when something went wrong: a store lost
beside its key file, a key file lost beside its store, a damaged database, a store that is not
there. What must hold: no new root of trust unasked, one clear line instead of a traceback, and
nothing created by a command that only reads.

The CLI runs in-process (``cli`` in tests/conftest.py) with ``catch_exceptions=False``: a
traceback fails the test.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from helpers import EXAMPLES

from meshbridge.pki.bundle import pem_fingerprints
from meshbridge.pki.chain import load_certs

EXAMPLE = str(EXAMPLES / "sleep-httpbin")


def _state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"  # where the cli fixture puts the store


def _lose(db: Path, how: str) -> None:
    for extra in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        extra.unlink(missing_ok=True)
    if how == "deleted":
        db.unlink()
    else:  # ": > state.db"
        db.write_bytes(b"")


def test_a_store_lost_beside_its_key_file_starts_no_new_root_unasked(cli, tmp_path: Path) -> None:
    assert cli("render", "-f", EXAMPLE, "-o", "out").exit_code == 0
    first = pem_fingerprints(cli("pki", "show", "--root").stdout)
    db = _state(tmp_path)
    key = db.with_name("state.db.key")
    for how in ("deleted", "emptied"):
        _lose(db, how)
        refused = cli("render", "-f", EXAMPLE, "-o", "out")
        assert refused.exit_code == 1, refused.stderr
        text = " ".join(refused.stderr.split())
        assert f"holds no PKI, but the key file {key} beside it exists" in text
        assert "pki import" in text and "pki init" in text and "backup" in text
        assert "no root CA yet" in cli("pki", "status").stdout, "a root was minted anyway"
        assert key.exists()
    # the explicit way through: a new PKI, on purpose, with the same key file
    assert cli("pki", "init", "-f", EXAMPLE).exit_code == 0
    assert cli("render", "-f", EXAMPLE, "-o", "out").exit_code == 0
    assert pem_fingerprints(cli("pki", "show", "--root").stdout) != first


def test_a_key_file_lost_beside_its_store_is_never_replaced(cli, tmp_path: Path) -> None:
    assert cli("render", "-f", EXAMPLE, "-o", "out").exit_code == 0
    key = _state(tmp_path).with_name("state.db.key")
    key.unlink()
    refused = cli("render", "-f", EXAMPLE, "-o", "out")
    assert refused.exit_code == 1
    assert f"its key file {key} is missing" in " ".join(refused.stderr.split())
    assert not key.exists(), "a new key file was made beside a store it cannot open"


def test_a_dry_run_first_is_not_taken_for_a_lost_store(cli) -> None:
    # the first command on a new store renders and rolls back: its key file stays known
    dry = cli("apply", "--dry-run", "-f", EXAMPLE)
    assert "holds no PKI" not in dry.stderr
    result = cli("render", "-f", EXAMPLE, "-o", "out")
    assert result.exit_code == 0, result.stderr


def test_a_damaged_store_is_one_clear_line(cli, tmp_path: Path) -> None:
    assert cli("render", "-f", EXAMPLE, "-o", "out").exit_code == 0
    assert cli("apply", "--dry-run", "-f", EXAMPLE).exit_code == 1  # no kubeconfig: Failed
    db = _state(tmp_path)
    with sqlite3.connect(db) as conn:  # damage the table every command reads, and its index
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = [p for (p,) in conn.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'blobs'")]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(db.read_bytes())
    for page in pages:
        data[(page - 1) * size : (page - 1) * size + 8] = b"\xff" * 8
    db.write_bytes(bytes(data))
    for args in (
        ["status"],
        ["pki", "status"],
        ["render", "-f", EXAMPLE, "-o", "out"],
        ["apply", "-f", EXAMPLE],
        ["diff", "-f", EXAMPLE],
    ):
        result = cli(*args)
        assert result.exit_code == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith(f"error: the state store {db} is damaged"), lines


def test_status_of_a_missing_store_says_so_and_creates_nothing(cli, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "state.db"
    result = cli("status", "--state", str(missing))
    assert result.exit_code == 0
    assert f"no state store at {missing}" in result.stderr
    assert not missing.exists() and not missing.parent.exists()


def test_the_root_backup_goes_back_into_a_new_store(cli, tmp_path: Path) -> None:
    assert cli("render", "-f", EXAMPLE, "-o", "out").exit_code == 0
    root = cli("pki", "show", "--root").stdout
    exported = cli("pki", "export", "--root", "--dir", "backup")
    assert exported.exit_code == 0, exported.stderr
    assert (tmp_path / "backup" / "root-ca.key").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in exported.stdout + exported.stderr
    again = exported.stdout.split()  # the import command it prints
    new = str(tmp_path / "new" / "state.db")
    assert cli(*again[1:], "--state", new).exit_code == 0
    assert cli("pki", "show", "--root", "--state", new).stdout == root
    assert len(load_certs(root)) == 1


def test_under_umask_000_the_store_and_its_key_are_private(cli, tmp_path: Path) -> None:
    """Every directory made for the store and its key file, and the export of the root's key,
    is 0700 and each file 0600: under umask 000 the parents were 0777 (issue 26)."""
    previous = os.umask(0)
    try:
        state = tmp_path / "deep" / "er" / "state.db"
        result = cli("render", "-f", EXAMPLE, "-o", "out", "--state", str(state))
        assert result.exit_code == 0, result.stderr
        exported = cli("pki", "export", "--root", "--dir", "backup/root", "--state", str(state))
        assert exported.exit_code == 0, exported.stderr
    finally:
        os.umask(previous)
    for directory in (tmp_path / "deep", tmp_path / "deep" / "er", tmp_path / "backup",
                      tmp_path / "backup" / "root"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    for key in (state, state.with_name("state.db.key"), tmp_path / "backup" / "root" / "root-ca.key"):
        assert key.stat().st_mode & 0o777 == 0o600, key
