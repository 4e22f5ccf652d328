"""The mesh's identity: minted once per store, carried by every object apply writes.

Objects meshbridge applies carry ``meshbridge.dev/mesh-id: <this id>``; a mesh owns (updates,
prunes) only objects with its id, so two stores whose meshes share a name never touch each
other's objects. Stores made before this revision applied objects labelled with the mesh's name
alone: every cluster such a store recorded an apply for (a ``status`` blob) gets a
``legacy-adoption`` blob, and the next full apply there adopts (relabels) the objects with the
mesh's name and no id, once (``docs/apply.md``, "Ownership").

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.String))
_blobs = sa.table(
    "blobs",
    sa.column("kind", sa.String),
    sa.column("name", sa.String),
    sa.column("data", sa.LargeBinary),
)


def upgrade() -> None:
    op.bulk_insert(_meta, [{"key": "mesh_id", "value": str(uuid.uuid4())}])
    applied = (
        op.get_bind()
        .execute(sa.select(_blobs.c.name).where(_blobs.c.kind == "status"))
        .scalars()
        .all()
    )
    if applied:
        rows = [{"kind": "legacy-adoption", "name": name, "data": b""} for name in applied]
        op.bulk_insert(_blobs, rows)


def downgrade() -> None:
    op.execute(_blobs.delete().where(_blobs.c.kind == "legacy-adoption"))
    op.execute(_meta.delete().where(_meta.c.key == "mesh_id"))
