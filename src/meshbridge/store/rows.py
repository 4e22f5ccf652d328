"""Store methods for the server's rows: intent documents, the audit log and API tokens.

A mixin of :class:`meshbridge.store.sql.SqlStore`, kept apart so each module stays about one
thing: ``sql`` is transactions, counters, VIPs and blobs; this is the API server's data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from meshbridge.store.dialect import upsert
from meshbridge.store.records import AuditEntry, ResourceRow, TokenRecord
from meshbridge.store.schema import audit_table, resources_table, tokens_table


class RowsMixin:
    """Resource, audit and token rows; needs the host's ``_connection()``."""

    def _connection(self) -> AbstractContextManager[Connection]:  # pragma: no cover - host's
        raise NotImplementedError

    # ---------------------------------------------------------------------------- resources

    def list_resources(
        self, kind: str | None = None, namespace: str | None = None
    ) -> list[ResourceRow]:
        query = select(resources_table)
        if kind is not None:
            query = query.where(resources_table.c.kind == kind)
        if namespace is not None:
            query = query.where(resources_table.c.namespace == namespace)
        query = query.order_by(
            resources_table.c.kind, resources_table.c.namespace, resources_table.c.name
        )
        with self._connection() as conn:
            return [_resource(r) for r in conn.execute(query).all()]

    def resources_since(self, version: int) -> list[ResourceRow]:
        """Every document written at a resourceVersion above ``version`` (a server catching up
        with other writers reads only these, and :meth:`resource_keys` for what was deleted)."""
        query = select(resources_table).where(resources_table.c.resource_version > version)
        with self._connection() as conn:
            return [_resource(r) for r in conn.execute(query).all()]

    def resource_keys(self) -> set[tuple[str, str, str]]:
        """The (kind, namespace, name) of every stored document."""
        t = resources_table
        with self._connection() as conn:
            rows = conn.execute(select(t.c.kind, t.c.namespace, t.c.name)).all()
        return {(str(k), str(ns), str(n)) for k, ns, n in rows}

    def get_resource(self, kind: str, namespace: str, name: str) -> ResourceRow | None:
        with self._connection() as conn:
            row = conn.execute(
                select(resources_table).where(
                    resources_table.c.kind == kind,
                    resources_table.c.namespace == namespace,
                    resources_table.c.name == name,
                )
            ).first()
        return None if row is None else _resource(row)

    def put_resources(self, rows: Sequence[ResourceRow]) -> None:
        """Insert or replace each row (keyed by kind, namespace, name): one upsert."""
        if not rows:
            return
        with self._connection() as conn:
            upsert(conn, resources_table, [_resource_values(r) for r in rows])

    def delete_resources(self, keys: Sequence[tuple[str, str, str]]) -> None:
        with self._connection() as conn:
            for kind, namespace, name in keys:
                conn.execute(delete(resources_table).where(*_key(kind, namespace, name)))

    def count_resources(self) -> dict[str, int]:
        with self._connection() as conn:
            rows = conn.execute(
                select(resources_table.c.kind, func.count()).group_by(resources_table.c.kind)
            ).all()
        return {str(kind): int(count) for kind, count in rows}

    # -------------------------------------------------------------------------------- audit

    def add_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Append entries (their ``id`` is ignored: the database numbers them)."""
        if not entries:
            return
        values = [
            {
                "at": e.at,
                "actor": e.actor,
                "verb": e.verb,
                "kind": e.kind,
                "namespace": e.namespace,
                "name": e.name,
                "before_version": e.before,
                "after_version": e.after,
            }
            for e in entries
        ]
        with self._connection() as conn:
            conn.execute(insert(audit_table), values)

    def list_audit(
        self, *, after: int = 0, limit: int = 100, kind: str | None = None, actor: str | None = None
    ) -> list[AuditEntry]:
        """Entries with ``id > after``, oldest first, at most ``limit``."""
        query = select(audit_table).where(audit_table.c.id > after)
        if kind is not None:
            query = query.where(audit_table.c.kind == kind)
        if actor is not None:
            query = query.where(audit_table.c.actor == actor)
        query = query.order_by(audit_table.c.id).limit(limit)
        with self._connection() as conn:
            return [
                AuditEntry(
                    int(r.id),
                    r.at,
                    r.actor,
                    r.verb,
                    r.kind,
                    r.namespace,
                    r.name,
                    r.before_version,
                    r.after_version,
                )
                for r in conn.execute(query).all()
            ]

    # ------------------------------------------------------------------------------- tokens

    def add_token(self, record: TokenRecord) -> None:
        with self._connection() as conn:
            conn.execute(insert(tokens_table).values(**_token_values(record)))

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._connection() as conn:
            row = conn.execute(select(tokens_table).where(tokens_table.c.id == token_id)).first()
        return None if row is None else _token(row)

    def find_token(self, name: str) -> TokenRecord | None:
        with self._connection() as conn:
            row = conn.execute(select(tokens_table).where(tokens_table.c.name == name)).first()
        return None if row is None else _token(row)

    def list_tokens(self) -> list[TokenRecord]:
        with self._connection() as conn:
            rows = conn.execute(select(tokens_table).order_by(tokens_table.c.name)).all()
        return [_token(r) for r in rows]

    def revoke_token(self, name: str, at: str) -> bool:
        """Mark the named token revoked; False when there is no such live token."""
        with self._connection() as conn:
            result = conn.execute(
                update(tokens_table)
                .where(tokens_table.c.name == name, tokens_table.c.revoked.is_(None))
                .values(revoked=at)
            )
        return bool(result.rowcount)


def _key(kind: str, namespace: str, name: str) -> Iterator[Any]:
    yield resources_table.c.kind == kind
    yield resources_table.c.namespace == namespace
    yield resources_table.c.name == name


def _resource(r: Any) -> ResourceRow:
    return ResourceRow(
        r.kind, r.namespace, r.name, r.uid, int(r.resource_version), r.created, r.body
    )


def _resource_values(r: ResourceRow) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "namespace": r.namespace,
        "name": r.name,
        "uid": r.uid,
        "resource_version": r.resource_version,
        "created": r.created,
        "body": r.body,
    }


def _token(r: Any) -> TokenRecord:
    return TokenRecord(r.id, r.name, r.role, r.digest, r.created, r.revoked)


def _token_values(t: TokenRecord) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "role": t.role,
        "digest": t.digest,
        "created": t.created,
        "revoked": t.revoked,
    }
