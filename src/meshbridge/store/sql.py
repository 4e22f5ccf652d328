"""SQLAlchemy Core implementation of the Store, for SQLite files and PostgreSQL.

Schema (version 1):

* ``meta(key, value)``                    schema version
* ``vips(cluster, address, key, released)`` one row per recorded address; ``released`` is NULL
  while the address is allocated
* ``blobs(kind, name, data)``             opaque records (sealed PKI material, ...)

SQLite transactions are ``BEGIN IMMEDIATE``: two meshbridge processes on one state file are
serialised, and the second waits (up to the busy timeout) instead of losing a write.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    select,
)
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from meshbridge.compile.vips import VipRecord
from meshbridge.errors import StateError, StateLocked

SCHEMA_VERSION = "1"

metadata = MetaData()
meta_table = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)
vips_table = Table(
    "vips",
    metadata,
    Column("cluster", String(63), primary_key=True),
    Column("address", String(45), primary_key=True),
    Column("key", String(1024), nullable=False),
    Column("released", Integer, nullable=True),
)
blobs_table = Table(
    "blobs",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("name", String(512), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class SqlStore:
    """A Store over a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn)
                row = conn.execute(
                    select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).first()
                if row is None:
                    conn.execute(
                        insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION)
                    )
                elif row[0] != SCHEMA_VERSION:
                    raise StateError(
                        f"state store schema version {row[0]} is not supported by this meshbridge "
                        f"(expects {SCHEMA_VERSION})"
                    )
        except OperationalError as exc:
            raise _state_error(exc) from exc

    # ------------------------------------------------------------------------- transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._conn is not None:
            yield  # nested: part of the outer transaction
            return
        try:
            with self.engine.begin() as conn:
                self._conn = conn
                try:
                    yield
                finally:
                    self._conn = None
        except OperationalError as exc:
            raise _state_error(exc) from exc

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise _state_error(exc) from exc

    # ---------------------------------------------------------------------------------- VIPs

    def vip_records(self) -> list[VipRecord]:
        with self._connection() as conn:
            rows = conn.execute(select(vips_table)).all()
        return sorted(VipRecord(r.cluster, r.key, r.address, r.released) for r in rows)

    def replace_vip_records(self, records: list[VipRecord]) -> None:
        with self._connection() as conn:
            conn.execute(delete(vips_table))
            if records:
                conn.execute(
                    insert(vips_table),
                    [
                        {
                            "cluster": r.cluster,
                            "address": r.address,
                            "key": r.key,
                            "released": r.released,
                        }
                        for r in records
                    ],
                )

    # --------------------------------------------------------------------------------- blobs

    def get_blob(self, kind: str, name: str) -> bytes | None:
        with self._connection() as conn:
            row = conn.execute(
                select(blobs_table.c.data).where(
                    blobs_table.c.kind == kind, blobs_table.c.name == name
                )
            ).first()
        return None if row is None else bytes(row[0])

    def put_blob(self, kind: str, name: str, data: bytes) -> None:
        with self._connection() as conn:
            conn.execute(
                delete(blobs_table).where(blobs_table.c.kind == kind, blobs_table.c.name == name)
            )
            conn.execute(insert(blobs_table).values(kind=kind, name=name, data=data))

    def delete_blob(self, kind: str, name: str) -> None:
        with self._connection() as conn:
            conn.execute(
                delete(blobs_table).where(blobs_table.c.kind == kind, blobs_table.c.name == name)
            )

    def list_blobs(self, kind: str) -> dict[str, bytes]:
        with self._connection() as conn:
            rows = conn.execute(
                select(blobs_table.c.name, blobs_table.c.data).where(blobs_table.c.kind == kind)
            ).all()
        return {r.name: bytes(r.data) for r in rows}

    def close(self) -> None:
        self.engine.dispose()


def _state_error(exc: SQLAlchemyError) -> StateError:
    text = str(getattr(exc, "orig", exc))
    if "locked" in text or "busy" in text:
        return StateLocked(f"the state store is busy (another meshbridge is writing it): {text}")
    return StateError(f"cannot use the state store: {text}")


def open_store(location: str) -> SqlStore:
    """Open (creating if needed) the store at a path or a ``sqlite://``/``postgresql://`` URL."""
    if "://" in location:
        url = location
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
    else:
        path = Path(location).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        except OSError as exc:
            raise StateError(f"cannot create the state store {path}: {exc.strerror}") from exc
        url = f"sqlite:///{path}"
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StateError(f"cannot open the state store: {exc}") from exc
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    return SqlStore(engine)
