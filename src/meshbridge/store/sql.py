"""SQLAlchemy Core implementation of the Store, for SQLite files and PostgreSQL.

The schema is made by the packaged Alembic migrations (``meshbridge.store.migrations``), run
when a store is opened; ``meshbridge.store.schema`` describes the tables as the code uses them.

Transactions:

* ``transaction()`` is a write transaction. On SQLite it is ``BEGIN IMMEDIATE``: two meshbridge
  processes on one file are serialised and the second waits (up to the busy timeout) instead of
  losing a write. On PostgreSQL (READ COMMITTED) a writer that must see a stable store calls
  ``lock_writes()`` first, which locks the ``resources`` counter row: writers of intent documents
  then run one after the other, across every server process on that database.
* ``reading()`` is a read-only snapshot: a deferred ``BEGIN`` on SQLite (WAL gives readers a
  snapshot without blocking writers), ``REPEATABLE READ, READ ONLY`` on PostgreSQL.

Transactions are per thread (the API server serves requests from a thread pool); a transaction
opened inside another one on the same thread joins it.

Every write of VIPs or of blobs that are render inputs moves the ``state`` counter (records of
what was done, such as apply status, do not: ``UNCOUNTED_BLOBS``); every write of intent
documents moves the ``resources`` counter (see :class:`Revisions`), which is how a server
process notices that another one changed the store.

Rows are written with real upserts (``INSERT ... ON CONFLICT DO UPDATE``, SQLAlchemy's
PostgreSQL and SQLite inserts), so two writers of one row never race into a unique violation.
Every database error leaves as a :class:`~meshbridge.errors.StateError` (``_state_error``):
busy or a lost race is ``StateLocked``, a connection refused or lost is ``StateUnavailable``;
pooled PostgreSQL connections are checked before use (``pool_pre_ping``), so a database
restart or fail-over costs the statements in flight, not every pooled connection in turn.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import stamina
from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from meshbridge.errors import StateError, StateLocked, StateUnavailable
from meshbridge.keyfiles import make_key_dirs, open_key_file
from meshbridge.store import migrate
from meshbridge.store.dialect import upsert
from meshbridge.store.placements import PlacementsMixin
from meshbridge.store.records import Revisions
from meshbridge.store.replicas import ReplicasMixin
from meshbridge.store.rows import RowsMixin
from meshbridge.store.schema import (
    MESH_ID_KEY,
    PLACEMENTS,
    PREVIOUS_MESH_ID,
    RESOURCES,
    STATE,
    UNCOUNTED_BLOBS,
    blobs_table,
    counters_table,
    meta_table,
    vips_table,
)
from meshbridge.viprecord import VipRecord

_READ_OPTION = "meshbridge_read"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 30000")
        _retry_locked(lambda: cur.execute("PRAGMA journal_mode = WAL"))
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_READ_OPTION):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _locked(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _retry_locked(statement: Callable[[], object]) -> None:
    """Run a statement that SQLite may refuse with "locked" without asking the busy handler
    (switching a fresh file to WAL while another connection opens it): again every 0.1 s, for
    up to 10 s (stamina, as every retry of meshbridge)."""
    for attempt in stamina.retry_context(
        on=_locked, attempts=None, timeout=10.0, wait_initial=0.1, wait_max=0.1,
        wait_jitter=0.0, wait_exp_base=1,
    ):
        with attempt:
            statement()


class SqlStore(RowsMixin, ReplicasMixin, PlacementsMixin):
    """A Store over a SQLAlchemy engine; migrates the database to the current schema."""

    def __init__(self, engine: Engine, *, migrate_schema: bool = True) -> None:
        self.engine = engine
        self._local = threading.local()
        try:
            if migrate_schema:
                migrate.ensure_current(engine)
            with self.engine.connect() as conn:
                found = migrate.current_revision(conn)
                conn.rollback()
        except SQLAlchemyError as exc:
            raise _state_error(exc, self._where) from exc
        if found != migrate.HEAD:
            raise StateError(
                f"the state store is at schema revision {found or 'none'}, expected "
                f"{migrate.HEAD}: run `meshbridge db upgrade`"
            )

    @property
    def _where(self) -> str:
        """The SQLite file, for messages (never a database URL: it may carry a password)."""
        return (self.engine.url.database or "") if self.dialect == "sqlite" else ""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ------------------------------------------------------------------------- transactions

    @property
    def _conn(self) -> Connection | None:
        conn: Connection | None = getattr(self._local, "conn", None)
        return conn

    @_conn.setter
    def _conn(self, value: Connection | None) -> None:
        self._local.conn = value

    @contextmanager
    def transaction(self, *, keep: bool = True) -> Iterator[None]:
        if self._conn is not None:
            if not keep:
                raise StateError("a rehearsal cannot be part of another transaction")
            yield  # nested: part of the outer transaction
            return
        try:
            with self.engine.connect() as conn, conn.begin() as work:
                self._conn = conn
                try:
                    yield
                finally:
                    self._conn = None
                if not keep:
                    work.rollback()
        except SQLAlchemyError as exc:
            raise _state_error(exc, self._where) from exc

    @contextmanager
    def reading(self) -> Iterator[None]:
        """A consistent read-only view of the store (joins an open transaction)."""
        if self._conn is not None:
            yield
            return
        try:
            with self.engine.connect() as conn:
                if self.dialect == "postgresql":
                    conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                else:
                    conn.execution_options(**{_READ_OPTION: True})
                with conn.begin():
                    self._conn = conn
                    try:
                        yield
                    finally:
                        self._conn = None
        except SQLAlchemyError as exc:
            raise _state_error(exc, self._where) from exc

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
            return
        try:
            with self.engine.begin() as conn:
                self._conn = conn
                try:
                    yield conn
                finally:
                    self._conn = None
        except SQLAlchemyError as exc:
            raise _state_error(exc, self._where) from exc

    def lock_writes(self) -> None:
        """Inside ``transaction()``: wait for, then exclude, every other writer of documents."""
        with self._connection() as conn:
            if self.dialect == "postgresql":
                conn.execute(
                    select(counters_table.c.value)
                    .where(counters_table.c.name == RESOURCES)
                    .with_for_update()
                )
            # SQLite: BEGIN IMMEDIATE already holds the database's write lock.

    def revisions(self) -> Revisions:
        with self._connection() as conn:
            rows = dict(conn.execute(select(counters_table.c.name, counters_table.c.value)).all())
        return Revisions(
            int(rows.get(RESOURCES, 0)), int(rows.get(STATE, 0)), int(rows.get(PLACEMENTS, 0))
        )

    def bump_resources(self) -> int:
        """Move the documents counter; the new value is the resourceVersion of this write."""
        return self._bump(RESOURCES)

    def _bump(self, name: str) -> int:
        with self._connection() as conn:
            value = conn.execute(
                update(counters_table)
                .where(counters_table.c.name == name)
                .values(value=counters_table.c.value + 1)
                .returning(counters_table.c.value)
            ).scalar_one()
        return int(value)

    def ping(self) -> None:
        """Raise StateError unless the database answers (a read: takes no write lock)."""
        with self.reading(), self._connection() as conn:
            conn.execute(text("SELECT 1"))

    def schema_version(self) -> str:
        with self._connection() as conn:
            row = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).first()
        return "" if row is None else str(row[0])

    def mesh_id(self) -> str:
        """The identity minted for this store's mesh when its schema was made (or upgraded)."""
        with self._connection() as conn:
            row = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == MESH_ID_KEY)
            ).first()
        if row is None:
            raise StateError("the state store has no mesh identity: run `meshbridge db upgrade`")
        return str(row[0])

    def take_mesh_id(self, mesh_id: str) -> None:
        """Carry the identity of a mesh whose store was lost (see ``usecases.rootguard``): this
        store becomes that mesh, for every apply from now on. The identity it carried so far is
        kept as a previous one: objects it wrote under it are still its own."""
        previous = self.mesh_id()
        with self._connection() as conn:
            upsert(conn, blobs_table, [{"kind": PREVIOUS_MESH_ID, "name": previous, "data": b""}])
            conn.execute(
                update(meta_table).where(meta_table.c.key == MESH_ID_KEY).values(value=mesh_id)
            )
            self._bump(STATE)

    # ---------------------------------------------------------------------------------- VIPs

    def vip_records(self) -> list[VipRecord]:
        with self._connection() as conn:
            rows = conn.execute(select(vips_table)).all()
        return sorted(VipRecord(r.cluster, r.key, r.address, r.released) for r in rows)

    def replace_vip_records(self, records: list[VipRecord]) -> None:
        with self._connection() as conn:
            conn.execute(delete(vips_table))
            if records:
                conn.execute(insert(vips_table), [_vip_row(r) for r in records])
            self._bump(STATE)

    def update_vip_records(self, before: list[VipRecord], after: list[VipRecord]) -> None:
        """Like ``replace_vip_records(after)`` when the store holds ``before``: writes the diff."""
        old = {(r.cluster, r.address): r for r in before}
        new = {(r.cluster, r.address): r for r in after}
        gone = [k for k, r in old.items() if new.get(k) != r]
        added = [_vip_row(r) for k, r in new.items() if old.get(k) != r]
        if not gone and not added:
            return
        with self._connection() as conn:
            for cluster, address in gone:
                conn.execute(
                    delete(vips_table).where(
                        vips_table.c.cluster == cluster, vips_table.c.address == address
                    )
                )
            if added:
                conn.execute(insert(vips_table), added)
            self._bump(STATE)

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
            upsert(conn, blobs_table, [{"kind": kind, "name": name, "data": data}])
            if kind not in UNCOUNTED_BLOBS:
                self._bump(STATE)

    def delete_blob(self, kind: str, name: str) -> None:
        with self._connection() as conn:
            result = conn.execute(
                delete(blobs_table).where(blobs_table.c.kind == kind, blobs_table.c.name == name)
            )
            if result.rowcount and kind not in UNCOUNTED_BLOBS:
                self._bump(STATE)

    def list_blobs(self, kind: str) -> dict[str, bytes]:
        with self._connection() as conn:
            rows = conn.execute(
                select(blobs_table.c.name, blobs_table.c.data).where(blobs_table.c.kind == kind)
            ).all()
        return {r.name: bytes(r.data) for r in rows}

    def fingerprint(self, skip_kinds: Collection[str] = ()) -> str:
        """A digest of every VIP and every blob but those of ``skip_kinds``: two equal digests
        mean the store holds the same render inputs (VIPs, certificates, keys)."""
        digest = hashlib.sha256()

        def add(*parts: object) -> None:
            for part in parts:
                data = part if isinstance(part, bytes) else str(part).encode()
                digest.update(b"%d:" % len(data))
                digest.update(data)

        with self._connection() as conn:
            vips = conn.execute(
                select(vips_table).order_by(vips_table.c.cluster, vips_table.c.address)
            )
            for v in vips:
                add(b"vip", v.cluster, v.address, v.key, v.released)
            blobs = conn.execute(
                select(blobs_table)
                .where(blobs_table.c.kind.not_in(list(skip_kinds)))
                .order_by(blobs_table.c.kind, blobs_table.c.name)
            )
            for b in blobs:
                add(b"blob", b.kind, b.name, bytes(b.data))
        return digest.hexdigest()

    def close(self) -> None:
        self.engine.dispose()


def _vip_row(r: VipRecord) -> dict[str, Any]:
    return {"cluster": r.cluster, "address": r.address, "key": r.key, "released": r.released}


# What SQLite says of a file that is not a usable database (damaged pages, another format).
_DAMAGED = ("malformed", "not a database", "file is encrypted", "database corrupt")


# PostgreSQL SQLSTATEs of a lost race: a retry of the whole transaction may succeed.
_RACES = {
    "40001": "a concurrent transaction changed the same rows",  # serialization_failure
    "40P01": "a deadlock with a concurrent transaction",  # deadlock_detected
    "55P03": "a row is locked by another transaction",  # lock_not_available
    "23505": "a concurrent writer stored the same key first",  # unique_violation
}
# SQLSTATE classes of a connection that failed or of a server going away (08: connection
# exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now).
_GONE = ("08", "57P01", "57P02", "57P03")


def _state_error(exc: SQLAlchemyError, where: str = "") -> StateError:
    """Every database error as one of the error tree's, in one line, never a traceback (nor SQL
    text, nor a URL): busy or a lost race (StateLocked), a connection refused or lost
    (StateUnavailable), damaged, or whatever the database said (StateError)."""
    orig = getattr(exc, "orig", None)
    raw = str(orig or exc)
    text_ = raw.splitlines()[0] if raw else type(exc).__name__
    sqlstate = str(getattr(orig, "sqlstate", "") or "")
    if isinstance(exc, PoolTimeout):
        return StateLocked("the state store is busy: no database connection free in time")
    if sqlstate in _RACES:
        return StateLocked(f"the state store is busy ({_RACES[sqlstate]}): retry")
    if "locked" in text_ or "busy" in text_:
        return StateLocked(f"the state store is busy (another meshbridge is writing it): {text_}")
    lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
    if lost or sqlstate.startswith(_GONE) or (
        not sqlstate and _is_connection_error(exc)
    ):
        return StateUnavailable(f"the state store cannot be reached now: {text_}")
    store = f"the state store {where}" if where else "the state store"
    if any(word in text_ for word in _DAMAGED):
        return StateError(
            f"{store} is damaged or not a meshbridge store ({text_}): restore it from a backup"
        )
    return StateError(f"cannot use {store}: {text_}")


def _is_connection_error(exc: SQLAlchemyError) -> bool:
    """psycopg's connection failures carry no SQLSTATE; they are OperationalErrors."""
    if not isinstance(exc, OperationalError):
        return False
    orig = getattr(exc, "orig", None)
    module = type(orig).__module__ if orig is not None else ""
    return module.startswith("psycopg")


def store_url(location: str) -> str:
    """The SQLAlchemy URL of a store location: a path, ``sqlite:///...`` or ``postgresql://``."""
    if location.startswith("postgresql://") or location.startswith("postgres://"):
        return "postgresql+psycopg://" + location.split("://", 1)[1]
    if "://" in location:
        return location
    return f"sqlite:///{Path(location).expanduser()}"


def _create_sqlite_file(url: str) -> None:
    raw = url[len("sqlite:///") :]
    if not raw or raw == ":memory:" or raw.startswith("file:"):
        return
    path = Path(raw).expanduser()
    try:
        make_key_dirs(path.parent)  # the store holds sealed keys, the key file goes beside it
        if not path.exists():
            os.close(open_key_file(path, os.O_CREAT | os.O_WRONLY))
    except OSError as exc:
        raise StateError(f"cannot create the state store {path}: {exc.strerror}") from exc


def store_exists(location: str) -> bool:
    """Whether a store is already there: a SQLite file that exists, or any database server."""
    url = store_url(location)
    if not url.startswith("sqlite:///"):
        return True
    raw = url[len("sqlite:///") :]
    if not raw or raw == ":memory:" or raw.startswith("file:"):
        return False
    return Path(raw).expanduser().is_file()


def open_store(location: str, *, migrate_schema: bool = True) -> SqlStore:
    """Open (creating and migrating if needed) the store at a path or a database URL.

    ``location`` is a file path (SQLite), ``sqlite:///path`` or ``postgresql://user@host/db``
    (served by psycopg 3).
    """
    url = store_url(location)
    if url.startswith("sqlite:///"):
        _create_sqlite_file(url)
    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # pre-ping: a pooled connection is checked (one round trip) before each use and
        # replaced if the server restarted or failed over, so that costs no request an error;
        # a statement in flight at that moment still fails (StateUnavailable, 503 + Retry-After)
        kwargs = {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True, "pool_timeout": 10}
    try:
        engine = create_engine(url, **kwargs)
    except ImportError as exc:
        raise StateError(
            f"cannot open the state store: database driver missing ({exc.name})"
        ) from exc
    except (SQLAlchemyError, ValueError) as exc:
        # never echo the URL: it may carry a password
        raise StateError(
            "cannot open the state store: not a store location (a file path, sqlite:///PATH or "
            "postgresql://USER@HOST:PORT/DB)"
        ) from exc
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    return SqlStore(engine, migrate_schema=migrate_schema)


def upgrade_store(location: str) -> migrate.Upgrade:
    """Run pending migrations on the store at ``location`` (``meshbridge db upgrade``)."""
    url = store_url(location)
    if url.startswith("sqlite:///"):
        _create_sqlite_file(url)
    try:
        engine = create_engine(url)
    except ImportError as exc:
        raise StateError(
            f"cannot open the state store: database driver missing ({exc.name})"
        ) from exc
    except (SQLAlchemyError, ValueError) as exc:
        raise StateError("cannot open the state store: not a store location") from exc
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    try:
        return migrate.upgrade(engine)
    finally:
        engine.dispose()
