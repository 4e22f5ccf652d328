"""The schema is made by the packaged Alembic migrations, on open, on both databases."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from meshbridge.errors import StateError
from meshbridge.store import LEGACY_ADOPTION, SCHEMA_HEAD, open_store
from meshbridge.store.schema import metadata
from meshbridge.store.sql import upgrade_store
from meshbridge.viprecord import VipRecord


def test_head_is_the_newest_packaged_revision() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", "meshbridge.store:migrations")
    assert ScriptDirectory.from_config(cfg).get_current_head() == SCHEMA_HEAD


def test_a_fresh_database_is_migrated_to_what_the_code_uses(empty_db_url: str) -> None:
    store = open_store(empty_db_url)
    try:
        with store.engine.connect() as conn:
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert version == SCHEMA_HEAD
        assert diff == [], diff
        assert store.schema_version() == "2"
    finally:
        store.close()


def test_upgrade_command_is_idempotent(empty_db_url: str) -> None:
    first = upgrade_store(empty_db_url)
    assert (first.before, first.after) == (None, SCHEMA_HEAD)
    again = upgrade_store(empty_db_url)
    assert again.before == again.after == SCHEMA_HEAD


def test_a_store_made_before_migrations_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the schema the first CLI release created
        conn.executescript("""
            CREATE TABLE meta (key VARCHAR(64) PRIMARY KEY, value VARCHAR(256) NOT NULL);
            CREATE TABLE vips (cluster VARCHAR(63), address VARCHAR(45), key VARCHAR(1024) NOT NULL,
                               released INTEGER, PRIMARY KEY (cluster, address));
            CREATE TABLE blobs (kind VARCHAR(64), name VARCHAR(512), data BLOB NOT NULL,
                                PRIMARY KEY (kind, name));
            INSERT INTO meta VALUES ('schema_version', '1');
            INSERT INTO vips VALUES ('c1', '240.0.0.1', 'svc.ns.c2', NULL);
            INSERT INTO blobs VALUES ('root', 'r1', x'00ff');
        """)
    store = open_store(str(path))
    try:
        assert store.vip_records() == [VipRecord("c1", "svc.ns.c2", "240.0.0.1", None)]
        assert store.get_blob("root", "r1") == b"\x00\xff"
        assert store.schema_version() == "2"
        assert store.revisions().resources == 0
    finally:
        store.close()


def test_a_newer_schema_is_refused(db_url: str) -> None:
    store = open_store(db_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StateError, match="9999"):
        open_store(db_url)


def test_concurrent_first_opens_do_not_race(empty_db_url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_store(empty_db_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_errors_never_show_a_password() -> None:
    with pytest.raises(StateError) as caught:
        open_store("postgresql://user:s3cretpw@127.0.0.1:1/nothing")
    assert "s3cretpw" not in str(caught.value)
    with pytest.raises(StateError) as caught:
        open_store("postgresql+nonsense://user:s3cretpw@host/db")
    assert "s3cretpw" not in str(caught.value)


def test_every_store_has_a_mesh_identity_of_its_own_that_stays(db_url: str, tmp_path: Path) -> None:
    store = open_store(db_url)
    first = store.mesh_id()
    store.close()
    store = open_store(db_url)
    try:
        assert store.mesh_id() == first and len(first) == 36
        assert store.list_blobs(LEGACY_ADOPTION) == {}  # a new store has nothing to adopt
    finally:
        store.close()
    other = open_store(str(tmp_path / "other.db"))
    try:
        assert other.mesh_id() != first
    finally:
        other.close()


def test_a_store_from_before_identities_gets_one_and_adopts_where_it_applied(db_url: str) -> None:
    store = open_store(db_url)
    with store.engine.begin() as conn:  # as meshbridge left it at revision 0002
        cfg = Config()
        cfg.set_main_option("script_location", "meshbridge.store:migrations")
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
        for cluster in ("east", "west"):
            conn.execute(text("INSERT INTO blobs (kind, name, data) VALUES ('status', :n, :d)"),
                         {"n": cluster, "d": b"{}"})
    store.close()
    store = open_store(db_url)
    try:
        assert len(store.mesh_id()) == 36
        assert sorted(store.list_blobs(LEGACY_ADOPTION)) == ["east", "west"]
    finally:
        store.close()
