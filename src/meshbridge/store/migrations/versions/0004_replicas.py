"""Several server replicas on one database: cluster leases, replica heartbeats, reconcile runs.

``leases``: one row per lock (``cluster:<name>``): who holds it, its term (grows each time
another holder takes it) and when it expires, by the database's clock. ``replicas``: each
server process's heartbeat. ``reconciles``: every reconcile of a cluster, by whom, in which
lease term, when it started and ended, how it went (the last 100 per cluster are kept).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("holder", sa.String(128), nullable=False),
        sa.Column("term", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.Float(precision=53), nullable=False),
    )
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started", sa.Float(precision=53), nullable=False),
        sa.Column("seen", sa.Float(precision=53), nullable=False),
    )
    op.create_table(
        "reconciles",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("cluster", sa.String(63), nullable=False),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("term", sa.BigInteger, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("started", sa.Float(precision=53), nullable=False),
        sa.Column("finished", sa.Float(precision=53), nullable=True),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("objects", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_reconciles_cluster_id", "reconciles", ["cluster", "id"])


def downgrade() -> None:
    op.drop_index("ix_reconciles_cluster_id", table_name="reconciles")
    op.drop_table("reconciles")
    op.drop_table("replicas")
    op.drop_table("leases")
