"""What differs between the two databases, in one place: upserts and the database's clock.

An upsert is one ``INSERT ... ON CONFLICT (primary key) DO UPDATE`` statement (SQLAlchemy's
PostgreSQL and SQLite inserts), never a DELETE then an INSERT: two transactions writing the
same row then wait for each other instead of one failing with a unique violation.

Leases and reconcile records are timed by the database's clock, not by each replica's: every
replica on one database then agrees on when a lease expires, whatever its own clock says.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, text
from sqlalchemy.dialects import sqlite as sqlite_dialect

from meshbridge.errors import StateError

__all__ = ["db_now", "upsert"]


def upsert(
    conn: Connection, table: Table, rows: list[dict[str, Any]], *, update: list[str] | None = None
) -> None:
    """Insert ``rows``, or update the row of the same primary key (the columns ``update``;
    default every other column)."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    names = update if update is not None else [c.name for c in table.columns if c.name not in keys]
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # imported here: a SQLite store (the CLI's) never needs the PostgreSQL dialect,
        # whose import (asyncio and its drivers' modules) is a part of every start-up
        from sqlalchemy.dialects import postgresql as pg_dialect

        pg = pg_dialect.insert(table)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=keys, set_={name: pg.excluded[name] for name in names}
        )
    elif dialect == "sqlite":
        lite = sqlite_dialect.insert(table)
        stmt = lite.on_conflict_do_update(
            index_elements=keys, set_={name: lite.excluded[name] for name in names}
        )
    else:  # pragma: no cover - stores are opened on these two only
        raise StateError(f"no upsert for the {dialect} database")
    conn.execute(stmt, rows)


def db_now(conn: Connection) -> float:
    """The database server's time, in seconds since the epoch (sub-second)."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one()
    else:
        value = conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one()
    return float(value)
