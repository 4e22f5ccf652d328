"""Store methods for several server replicas: leases, heartbeats and the reconcile history.

A mixin of :class:`meshbridge.store.sql.SqlStore`. Every time is the database's clock
(``dialect.db_now``), read in the same transaction as the rows it is compared with, so replicas
whose clocks disagree still agree on who holds a lease.

A lease is taken with one upsert whose ``WHERE`` lets it through only when the row is free
(expired) or already the taker's: on PostgreSQL the conflicting row is locked and the condition
checked again on its newest version, on SQLite the write transaction holds the database; either
way two takers never both succeed.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect

from meshbridge.store.dialect import db_now, upsert
from meshbridge.store.records import ClusterRuns, Lease, ReconcileRun, ReplicaRecord
from meshbridge.store.schema import leases_table, reconciles_table, replicas_table

KEEP_RUNS = 100  # reconcile runs kept per cluster
FORGET_REPLICAS = 86400.0  # seconds after its last heartbeat a replica's row is removed


class ReplicasMixin:
    """Leases, replicas and reconcile runs; needs the host's ``_connection()``."""

    def _connection(self) -> AbstractContextManager[Connection]:  # pragma: no cover - host's
        raise NotImplementedError

    # ------------------------------------------------------------------------------ leases

    def acquire_lease(self, name: str, holder: str, ttl: float) -> Lease | None:
        """Take (or extend) the lease ``name`` for ``ttl`` seconds, if it is free or already
        ``holder``'s; None when another holder has it."""
        t = leases_table
        with self._connection() as conn:
            now = db_now(conn)
            values = {"name": name, "holder": holder, "term": 1, "expires": now + ttl}
            free = (t.c.holder == holder) | (t.c.expires < now)
            term = case((t.c.holder == holder, t.c.term), else_=t.c.term + 1)
            if conn.dialect.name == "postgresql":
                # imported here: a SQLite store (the CLI's) never needs the PostgreSQL dialect,
                # whose import (asyncio and its drivers' modules) is a part of every start-up
                from sqlalchemy.dialects import postgresql as pg_dialect

                pg = pg_dialect.insert(t).values(values)
                stmt: Any = pg.on_conflict_do_update(
                    index_elements=[t.c.name],
                    set_={"holder": pg.excluded.holder, "expires": pg.excluded.expires,
                          "term": term},
                    where=free,
                )
            else:
                lite = sqlite_dialect.insert(t).values(values)
                stmt = lite.on_conflict_do_update(
                    index_elements=[t.c.name],
                    set_={"holder": lite.excluded.holder, "expires": lite.excluded.expires,
                          "term": term},
                    where=free,
                )
            conn.execute(stmt)
            row = conn.execute(select(t).where(t.c.name == name)).one()
        if row.holder != holder:
            return None
        return Lease(row.name, row.holder, int(row.term), float(row.expires))

    def renew_leases(self, holder: str, names: Collection[str], ttl: float) -> set[str]:
        """Extend ``holder``'s unexpired leases among ``names`` by ``ttl`` from now; the names
        still held. A lease that expired is not renewed: another holder may have it by now."""
        if not names:
            return set()
        t = leases_table
        mine = (t.c.holder == holder) & t.c.name.in_(list(names))
        with self._connection() as conn:
            now = db_now(conn)
            conn.execute(update(t).where(mine, t.c.expires >= now).values(expires=now + ttl))
            held = conn.execute(select(t.c.name).where(mine, t.c.expires > now)).scalars()
            return {str(n) for n in held}

    def release_leases(self, holder: str, names: Collection[str]) -> None:
        """Give ``holder``'s leases among ``names`` up now (they expire; the term is kept)."""
        if not names:
            return
        t = leases_table
        with self._connection() as conn:
            now = db_now(conn)
            conn.execute(
                update(t)
                .where(t.c.holder == holder, t.c.name.in_(list(names)))
                .values(expires=now - 0.001)
            )

    def leases(self, prefix: str = "") -> tuple[float, list[Lease]]:
        """The database's time and every lease whose name starts with ``prefix``."""
        t = leases_table
        with self._connection() as conn:
            now = db_now(conn)
            rows = conn.execute(
                select(t).where(t.c.name.startswith(prefix, autoescape=True)).order_by(t.c.name)
            ).all()
        return now, [Lease(r.name, r.holder, int(r.term), float(r.expires)) for r in rows]

    # ---------------------------------------------------------------------------- replicas

    def heartbeat(self, replica: str, host: str, pid: int) -> float:
        """Record that ``replica`` is alive now; the database's time."""
        t = replicas_table
        with self._connection() as conn:
            now = db_now(conn)
            found = conn.execute(select(t.c.started).where(t.c.id == replica)).first()
            started = float(found[0]) if found is not None else now
            upsert(conn, t, [{"id": replica, "host": host, "pid": pid, "started": started,
                              "seen": now}])
            conn.execute(delete(t).where(t.c.seen < now - FORGET_REPLICAS))
        return now

    def replicas(self) -> tuple[float, list[ReplicaRecord]]:
        """The database's time and every replica seen in the last day."""
        t = replicas_table
        with self._connection() as conn:
            now = db_now(conn)
            rows = conn.execute(select(t).order_by(t.c.id)).all()
        return now, [
            ReplicaRecord(r.id, r.host, int(r.pid), float(r.started), float(r.seen)) for r in rows
        ]

    def forget_replica(self, replica: str) -> None:
        """A replica that stops says so: the others need not wait for its heartbeat to age."""
        with self._connection() as conn:
            conn.execute(delete(replicas_table).where(replicas_table.c.id == replica))

    # ---------------------------------------------------------------------- reconcile runs

    def start_run(self, cluster: str, replica: str, term: int, revision: int) -> int:
        """Record a reconcile starting now; its id."""
        with self._connection() as conn:
            now = db_now(conn)
            result = conn.execute(
                insert(reconciles_table)
                .values(cluster=cluster, replica=replica, term=term, revision=revision,
                        started=now, error="", objects=0)
                .returning(reconciles_table.c.id)
            )
            return int(result.scalar_one())

    def finish_run(self, run: int, state: str, error: str, objects: int) -> None:
        """Record how a run ended, now; runs of its cluster beyond the last 100 are dropped."""
        t = reconciles_table
        with self._connection() as conn:
            now = db_now(conn)
            conn.execute(
                update(t)
                .where(t.c.id == run)
                .values(finished=now, state=state, error=error[:2000], objects=objects)
            )
            cluster = conn.execute(select(t.c.cluster).where(t.c.id == run)).scalar_one()
            oldest = conn.execute(
                select(t.c.id).where(t.c.cluster == cluster).order_by(t.c.id.desc())
                .offset(KEEP_RUNS - 1).limit(1)
            ).scalar()
            if oldest is not None:
                conn.execute(delete(t).where(t.c.cluster == cluster, t.c.id < oldest))

    def runs(
        self, cluster: str | None = None, *, after: int = 0, limit: int = 1000
    ) -> list[ReconcileRun]:
        """Reconcile runs, oldest first (of one cluster, or all), with ``id > after``."""
        t = reconciles_table
        query = select(t).where(t.c.id > after)
        if cluster is not None:
            query = query.where(t.c.cluster == cluster)
        with self._connection() as conn:
            rows = conn.execute(query.order_by(t.c.id).limit(limit)).all()
        return [_run(r) for r in rows]

    def cluster_runs(self) -> dict[str, ClusterRuns]:
        """Per cluster: its last run, the end of its last success, the failures since."""
        t = reconciles_table
        with self._connection() as conn:
            last_ids = select(func.max(t.c.id)).group_by(t.c.cluster)
            lasts = conn.execute(select(t).where(t.c.id.in_(last_ids))).all()
            successes = dict(
                conn.execute(
                    select(t.c.cluster, func.max(t.c.id)).where(t.c.state == "Applied")
                    .group_by(t.c.cluster)
                ).all()
            )
            ended = dict(
                conn.execute(
                    select(t.c.id, t.c.finished).where(t.c.id.in_(list(successes.values())))
                ).all()
            ) if successes else {}
            failed = conn.execute(
                select(t.c.cluster, t.c.id).where(
                    t.c.finished.is_not(None), t.c.state != "Applied"
                )
            ).all()
        failures: dict[str, int] = {}
        for cluster, run in failed:
            if run > successes.get(cluster, 0):
                failures[cluster] = failures.get(cluster, 0) + 1
        out = {}
        for r in lasts:
            success = successes.get(r.cluster)
            finished = ended.get(success) if success is not None else None
            out[str(r.cluster)] = ClusterRuns(
                _run(r), None if finished is None else float(finished), failures.get(r.cluster, 0)
            )
        return out


def _run(r: Any) -> ReconcileRun:
    return ReconcileRun(
        int(r.id), r.cluster, r.replica, int(r.term), int(r.revision), float(r.started),
        None if r.finished is None else float(r.finished), r.state, r.error, int(r.objects),
    )
