"""Discovered placements: where each App with ``discover: {}`` was found, and how the watch of
each cluster is doing.

``placements``: one row per (namespace, App, cluster) the App is placed in: found running
(``gone`` null; ``ready`` instances, ``seen`` when last read) or kept for the grace period
after it was found nowhere (``gone``: since when). Times are the database's clock. The counter
``placements`` moves when the set of rows does (a render input changed; a count or a time
changing is not one). ``placement_watches``: per cluster, the state of the server's watch of it
(which replica, watching or failing and why, since when).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_counters = sa.table("counters", sa.column("name", sa.String), sa.column("value", sa.BigInteger))


def upgrade() -> None:
    op.create_table(
        "placements",
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("app", sa.String(63), primary_key=True),
        sa.Column("cluster", sa.String(63), primary_key=True),
        sa.Column("ready", sa.Integer, nullable=False),
        sa.Column("found", sa.Float(precision=53), nullable=False),
        sa.Column("seen", sa.Float(precision=53), nullable=False),
        sa.Column("gone", sa.Float(precision=53), nullable=True),
    )
    op.create_table(
        "placement_watches",
        sa.Column("cluster", sa.String(63), primary_key=True),
        sa.Column("replica", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=False, server_default=""),
        sa.Column("since", sa.Float(precision=53), nullable=False),
        sa.Column("relists", sa.Integer, nullable=False, server_default="0"),
    )
    op.bulk_insert(_counters, [{"name": "placements", "value": 0}])


def downgrade() -> None:
    op.execute(_counters.delete().where(_counters.c.name == "placements"))
    op.drop_table("placement_watches")
    op.drop_table("placements")
