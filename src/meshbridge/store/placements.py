"""Store methods for discovered placements: the rows, the counter that says they changed, the
lock that makes one decision at a time, and the state of each cluster's watch.

A mixin of :class:`meshbridge.store.sql.SqlStore`. What to place where is decided elsewhere
(``usecases.placement``, a pure function of the rows read here, what the clusters said and the
database's time); this module reads and writes what was decided. Deciding needs every row of an
App at once (gone from every cluster is a fact about all of them), so a decision runs in one
transaction that first calls :meth:`lock_placements`: on PostgreSQL the ``placements`` counter's
row is locked, so two replicas recording two clusters' changes decide one after the other; on
SQLite the write transaction already holds the database.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager

from sqlalchemy import Connection, delete, select, update

from meshbridge.store.dialect import db_now, upsert
from meshbridge.store.records import PlacementRow, WatchRecord
from meshbridge.store.schema import (
    PLACEMENTS,
    counters_table,
    placement_watches_table,
    placements_table,
)


class PlacementsMixin:
    """Placement rows and watch records; needs the host's ``_connection()``."""

    def _connection(self) -> AbstractContextManager[Connection]:  # pragma: no cover - host's
        raise NotImplementedError

    def clock(self) -> float:
        """The database's time (seconds since the epoch): what placement times are read by."""
        with self._connection() as conn:
            return db_now(conn)

    def lock_placements(self) -> None:
        """Inside ``transaction()``: wait for, then exclude, every other placement decision."""
        with self._connection() as conn:
            conn.execute(
                select(counters_table.c.value)
                .where(counters_table.c.name == PLACEMENTS)
                .with_for_update()
            )

    def placement_rows(self) -> list[PlacementRow]:
        t = placements_table
        with self._connection() as conn:
            rows = conn.execute(select(t).order_by(t.c.namespace, t.c.app, t.c.cluster)).all()
        return [PlacementRow(r.namespace, r.app, r.cluster, int(r.ready), float(r.found),
                             float(r.seen), None if r.gone is None else float(r.gone))
                for r in rows]

    def write_placements(
        self,
        rows: Sequence[PlacementRow],
        deleted: Collection[tuple[str, str, str]],
        *,
        moved: bool,
    ) -> None:
        """Write ``rows`` (insert or replace), delete the rows of ``deleted`` keys; ``moved``:
        the set of placements changed (its counter moves: server caches render again)."""
        t = placements_table
        with self._connection() as conn:
            upsert(conn, t, [
                {"namespace": r.namespace, "app": r.app, "cluster": r.cluster, "ready": r.ready,
                 "found": r.found, "seen": r.seen, "gone": r.gone}
                for r in rows
            ])
            for namespace, app, cluster in deleted:
                conn.execute(delete(t).where(t.c.namespace == namespace, t.c.app == app,
                                             t.c.cluster == cluster))
            if moved:
                conn.execute(
                    update(counters_table)
                    .where(counters_table.c.name == PLACEMENTS)
                    .values(value=counters_table.c.value + 1)
                )

    def record_watch(self, cluster: str, replica: str, state: str, error: str,
                     relists: int) -> None:
        """The state of ``replica``'s watch of ``cluster``; ``since`` moves when it changes."""
        t = placement_watches_table
        with self._connection() as conn:
            now = db_now(conn)
            row = conn.execute(select(t).where(t.c.cluster == cluster)).first()
            same = row is not None and (row.replica, row.state, row.error) == (
                replica, state, error)
            since = float(row.since) if same and row is not None else now
            upsert(conn, t, [{"cluster": cluster, "replica": replica, "state": state,
                              "error": error, "since": since, "relists": relists}])

    def forget_watches(self, clusters: Collection[str], replica: str) -> None:
        """``replica`` no longer watches ``clusters``."""
        if not clusters:
            return
        t = placement_watches_table
        with self._connection() as conn:
            conn.execute(delete(t).where(t.c.cluster.in_(list(clusters)), t.c.replica == replica))

    def watch_records(self) -> list[WatchRecord]:
        t = placement_watches_table
        with self._connection() as conn:
            rows = conn.execute(select(t).order_by(t.c.cluster)).all()
        return [WatchRecord(r.cluster, r.replica, r.state, r.error, float(r.since),
                            int(r.relists)) for r in rows]
