"""Run the packaged Alembic migrations programmatically: no ``alembic.ini`` for users.

Opening a store calls :func:`ensure_current`: a cheap look at ``alembic_version`` and, only when
the store is behind, an upgrade inside one transaction that holds the store's write lock
(``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL; both databases
have transactional DDL), so concurrent first starts neither race nor leave a half-made schema.

Stores created before migrations existed (tables ``meta``/``vips``/``blobs``, no
``alembic_version``) are stamped at the baseline revision and then upgraded.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from meshbridge.errors import StateError

HEAD = "0005"
BASELINE = "0001"
KNOWN = ("0001", "0002", "0003", "0004", "0005")
_PG_LOCK_ID = 0x6D657368  # "mesh": the advisory lock every migrating process takes


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade did: the revision found (None: empty database) and the one left."""

    before: str | None
    after: str


def current_revision(conn: Connection) -> str | None:
    """The store's Alembic revision; ``BASELINE`` for a pre-migration store; None when empty."""
    insp = inspect(conn)
    if insp.has_table("alembic_version"):
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        return None if row is None else str(row[0])
    if insp.has_table("meta") and insp.has_table("vips") and insp.has_table("blobs"):
        return BASELINE
    return None


def ensure_current(engine: Engine) -> Upgrade:
    """Bring the store to ``HEAD``; refuse a store made by a newer meshbridge."""
    with engine.connect() as conn:
        found = current_revision(conn)
        conn.rollback()
    if found == HEAD:
        return Upgrade(found, HEAD)
    _refuse_unknown(found)
    return upgrade(engine)


def upgrade(engine: Engine) -> Upgrade:
    """Apply every pending migration in one transaction, under the store's write lock."""
    from alembic import command  # imported only when there is work: it is slow to import
    from alembic.config import Config

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
            before = current_revision(conn)
            _refuse_unknown(before)
            if before != HEAD:
                cfg = Config()
                cfg.set_main_option("script_location", "meshbridge.store:migrations")
                cfg.attributes["connection"] = conn
                if before == BASELINE and not inspect(conn).has_table("alembic_version"):
                    command.stamp(cfg, BASELINE)
                command.upgrade(cfg, HEAD)
    except SQLAlchemyError as exc:
        raise StateError(f"cannot migrate the state store: {getattr(exc, 'orig', exc)}") from exc
    return Upgrade(before, HEAD)


def _refuse_unknown(found: str | None) -> None:
    if found is not None and found not in KNOWN:
        raise StateError(
            f"the state store is at schema revision {found}, which this meshbridge does not "
            f"know (newest known: {HEAD}): upgrade meshbridge"
        )
