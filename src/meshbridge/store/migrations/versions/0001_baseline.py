"""Baseline: the state store as the CLI first shipped it (VIPs and blobs).

Stores made before migrations existed already hold exactly these tables; they are stamped at
this revision instead of being migrated by it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
    )
    op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])
    op.create_table(
        "vips",
        sa.Column("cluster", sa.String(63), primary_key=True),
        sa.Column("address", sa.String(45), primary_key=True),
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("released", sa.Integer, nullable=True),
    )
    op.create_table(
        "blobs",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("blobs")
    op.drop_table("vips")
    op.drop_table("meta")
