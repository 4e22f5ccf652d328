"""Plain records the store hands out and takes in: stored documents, audit entries, tokens.

They are plain frozen data, so the use cases and the server can cache them, compare them and build API
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
    placements: int = 0  # grows when the set of discovered placements changes


@dataclass(frozen=True)
class PlacementRow:
    """Where a discovered App is placed: found running in ``cluster`` (``gone`` None) with
    ``ready`` instances, last read at ``seen``; or found nowhere any more since ``gone`` and
    kept for the grace period. Times are the database's clock (seconds since the epoch);
    ``found`` is when this stretch of it running there began."""

    namespace: str
    app: str
    cluster: str
    ready: int
    found: float
    seen: float
    gone: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.app, self.cluster)


@dataclass(frozen=True)
class WatchRecord:
    """How a server replica's watch of a cluster is doing (``watching`` or ``failing`` with
    the error), since when (database clock), and how often it listed again after a 410."""

    cluster: str
    replica: str
    state: str
    error: str
    since: float
    relists: int


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


@dataclass(frozen=True)
class Lease:
    """A lock with an expiry: ``holder`` may act for ``name`` until ``expires`` (database clock,
    seconds since the epoch). ``term`` grows each time a new holder takes it."""

    name: str
    holder: str
    term: int
    expires: float


@dataclass(frozen=True)
class ReplicaRecord:
    """A server process, as its last heartbeat left it (database clock)."""

    id: str
    host: str
    pid: int
    started: float
    seen: float


@dataclass(frozen=True)
class ReconcileRun:
    """One reconcile of one cluster: who ran it, under which lease term, for which revision of
    the documents, when (database clock; ``finished`` None while running, or if its replica
    died), how it ended and how many objects the cluster was to hold."""

    id: int
    cluster: str
    replica: str
    term: int
    revision: int
    started: float
    finished: float | None
    state: str | None
    error: str
    objects: int


@dataclass(frozen=True)
class ClusterRuns:
    """What the reconcile history says of one cluster: its last run, the end of its last
    successful one, and the failed runs since (over the runs kept: the last 100)."""

    last: ReconcileRun
    last_success: float | None
    failures: int
