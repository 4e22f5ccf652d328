"""Plain records the store hands out and takes in: stored documents, audit entries, tokens.

They are plain frozen data, so the service layer can cache them, compare them and build API
answers from them without holding a database connection.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Revisions:
    """The store's two change counters.

    ``resources`` grows with every write of intent documents (it is the ``resourceVersion`` of
    the objects written); ``state`` grows with every write of derived state (VIP allocations,
    PKI blobs). A cache keyed by both is stale exactly when another writer changed something.
    """

    resources: int
    state: int


@dataclass(frozen=True)
class ResourceRow:
    """One stored intent document: ``body`` is its JSON text without the server-set fields."""

    kind: str
    namespace: str  # "" for cluster-scoped kinds
    name: str
    uid: str
    resource_version: int
    created: str  # RFC 3339, UTC
    body: str


@dataclass(frozen=True)
class AuditEntry:
    """One change: who (token name), what (verb, kind/namespace/name), when, versions."""

    id: int
    at: str
    actor: str
    verb: str
    kind: str
    namespace: str
    name: str
    before: int | None
    after: int | None


@dataclass(frozen=True)
class TokenRecord:
    """An API token as stored: never the token itself, only its SHA-256 digest."""

    id: str
    name: str
    role: str
    digest: str
    created: str
    revoked: str | None = None
