"""The tables, as the current code reads and writes them.

The database schema itself is made by the Alembic migrations in ``migrations/versions``; these
definitions must describe what the newest migration leaves behind (a unit test compares them).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

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
counters_table = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
resources_table = Table(
    "resources",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("namespace", String(63), primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("resource_version", BigInteger, nullable=False),
    Column("created", String(32), nullable=False),
    Column("body", Text, nullable=False),
)
audit_table = Table(
    "audit",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("verb", String(16), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("namespace", String(63), nullable=False),
    Column("name", String(128), nullable=False),
    Column("before_version", BigInteger, nullable=True),
    Column("after_version", BigInteger, nullable=True),
)
tokens_table = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created", String(32), nullable=False),
    Column("revoked", String(32), nullable=True),
)
leases_table = Table(
    "leases",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("term", BigInteger, nullable=False),
    Column("expires", Float(precision=53), nullable=False),  # database clock, epoch seconds
)
replicas_table = Table(
    "replicas",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", Float(precision=53), nullable=False),
    Column("seen", Float(precision=53), nullable=False),
)
reconciles_table = Table(
    "reconciles",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("cluster", String(63), nullable=False),
    Column("replica", String(128), nullable=False),
    Column("term", BigInteger, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("started", Float(precision=53), nullable=False),
    Column("finished", Float(precision=53), nullable=True),
    Column("state", String(16), nullable=True),
    Column("error", Text, nullable=False, server_default=""),
    Column("objects", Integer, nullable=False, server_default="0"),
)
placements_table = Table(
    "placements",
    metadata,
    Column("namespace", String(63), primary_key=True),
    Column("app", String(63), primary_key=True),
    Column("cluster", String(63), primary_key=True),
    Column("ready", Integer, nullable=False),
    Column("found", Float(precision=53), nullable=False),  # database clock, epoch seconds
    Column("seen", Float(precision=53), nullable=False),
    Column("gone", Float(precision=53), nullable=True),
)
placement_watches_table = Table(
    "placement_watches",
    metadata,
    Column("cluster", String(63), primary_key=True),
    Column("replica", String(128), nullable=False),
    Column("state", String(16), nullable=False),
    Column("error", Text, nullable=False, server_default=""),
    Column("since", Float(precision=53), nullable=False),
    Column("relists", Integer, nullable=False, server_default="0"),
)
Index("ix_resources_kind_version", resources_table.c.kind, resources_table.c.resource_version)
Index("ix_reconciles_cluster_id", reconciles_table.c.cluster, reconciles_table.c.id)

RESOURCES = "resources"
STATE = "state"
PLACEMENTS = "placements"  # the counter of the placements table's rows (migration 0005)

MESH_ID_KEY = "mesh_id"  # the meta row of the mesh's identity (migration 0003)
LEGACY_ADOPTION = "legacy-adoption"  # blobs named by cluster: adopt pre-identity objects there
PREVIOUS_MESH_ID = "mesh-id.previous"  # blobs named by an identity this store carried before

# Blob kinds that record what was done rather than feed a render: writing them does not move the
# ``state`` counter, so they invalidate no server cache (a reconcile's status, written after
# every run, would otherwise make every replica render every cluster again). The names are the
# use cases': ``status``, ``propagation`` and ``apply-render`` (usecases.apply), ``pki.held``
# (usecases.seen_cacerts), ``pki.istiod`` (usecases.istiod_roots); a unit test keeps this set and
# ``usecases.apply.VOLATILE_KINDS`` equal.
UNCOUNTED_BLOBS = frozenset(
    {"status", "propagation", "apply-render", "pki.held", "pki.istiod", LEGACY_ADOPTION}
)
