"""Alembic environment: migrate the connection meshbridge hands in, inside its transaction.

meshbridge opens the transaction itself (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so two processes starting on a fresh database never both create tables.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from meshbridge.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # developer use: `alembic -x url=... revision --autogenerate`
    url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///meshbridge-dev.db")
    engine = create_engine(url)
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
