"""A real ``meshbridge serve`` holding a mesh, for the page tests: its URL and a token of
each role. The documents are stored through the API (``POST /api/v1/apply``), as a user would."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from apitest import start_server

from meshbridge.server.tokens import create_token
from meshbridge.store import open_store
from meshbridge.usecases.apply import STATUS_KIND


@dataclass
class Served:
    url: str
    tokens: dict[str, str]

    def graph(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.url}/api/v1/graph", timeout=60,
                           headers={"Authorization": f"Bearer {self.tokens['viewer']}"})
        answer.raise_for_status()
        return dict(answer.json())


@contextmanager
def serving(folder: Path, mesh_yaml: str, statuses: Sequence[dict[str, Any]] = ()) -> Iterator[Served]:
    """A server (with certificates: ``--pki``, as served by default) on a new SQLite database
    in ``folder`` holding ``mesh_yaml``; ``statuses`` are apply results recorded for clusters
    (as the reconciler records them)."""
    db = f"sqlite:///{folder / 'ui.db'}"
    store = open_store(db)
    try:
        tokens = {role: create_token(store, f"{role}-ui", role)
                  for role in ("viewer", "editor", "admin")}
        with store.transaction():
            for record in statuses:
                store.put_blob(STATUS_KIND, record["cluster"], json.dumps(record).encode())
    finally:
        store.close()
    server = start_server(db, folder / "server.log", None, "--pki")
    try:
        answer = httpx.post(f"{server.url}/api/v1/apply", content=mesh_yaml.encode(), timeout=300,
                            headers={"Authorization": f"Bearer {tokens['editor']}",
                                     "Content-Type": "application/yaml"})
        assert answer.status_code == 200, answer.text
        yield Served(server.url, tokens)
    finally:
        server.stop()
