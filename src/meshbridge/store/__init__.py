"""State store: VIP allocations and sealed PKI material that must survive between runs.

``Store`` is the small interface every use case talks to; ``SqlStore`` implements it with
SQLAlchemy Core for SQLite (the CLI's default, ``.meshbridge/state.db``) and PostgreSQL (the
server). The store never sees a private key in clear: the PKI seals keys before they get here.
"""

from meshbridge.store.base import Store
from meshbridge.store.sql import SqlStore, open_store

__all__ = ["SqlStore", "Store", "open_store"]
