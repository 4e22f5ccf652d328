"""State store: VIP allocations, sealed PKI material and the API server's documents.

``Store`` is the small interface a render talks to; ``ResourceStore`` adds the server's intent
documents, audit log and tokens. ``SqlStore`` implements both with SQLAlchemy Core for SQLite
(the CLI's default, ``.meshbridge/state.db``) and PostgreSQL (the server), with the schema kept
by packaged Alembic migrations. The store never sees a private key in clear: the PKI seals keys
before they get here.
"""

from meshbridge.store.base import PlacementStore, ReplicaStore, ResourceStore, Store
from meshbridge.store.migrate import HEAD as SCHEMA_HEAD
from meshbridge.store.records import (
    AuditEntry,
    ClusterRuns,
    Lease,
    PlacementRow,
    ReconcileRun,
    ReplicaRecord,
    ResourceRow,
    Revisions,
    TokenRecord,
    WatchRecord,
)
from meshbridge.store.schema import LEGACY_ADOPTION, PREVIOUS_MESH_ID
from meshbridge.store.sql import SqlStore, open_store, store_exists, store_url

__all__ = [
    "LEGACY_ADOPTION",
    "PREVIOUS_MESH_ID",
    "SCHEMA_HEAD",
    "AuditEntry",
    "ClusterRuns",
    "Lease",
    "PlacementRow",
    "PlacementStore",
    "ReconcileRun",
    "ReplicaRecord",
    "ReplicaStore",
    "ResourceRow",
    "ResourceStore",
    "Revisions",
    "SqlStore",
    "Store",
    "TokenRecord",
    "WatchRecord",
    "open_store",
    "store_exists",
    "store_url",
]
