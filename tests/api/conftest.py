"""Fixtures of the API suite: a store on each backend, tokens of each role, an in-process
client, and a real ``meshbridge serve`` process (uvicorn) on 127.0.0.1."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import dbfixtures
import pytest
from apitest import Api, LiveServer, start_server
from fastapi.testclient import TestClient

from meshbridge.api import create_app
from meshbridge.server.tokens import create_token
from meshbridge.store import SqlStore, open_store

backend = dbfixtures.backend
db_url = dbfixtures.db_url
empty_db_url = dbfixtures.empty_db_url
pg = dbfixtures.pg
pg_template = dbfixtures.pg_template



@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


@pytest.fixture
def tokens(store: SqlStore) -> dict[str, str]:
    return {role: create_token(store, f"{role}-bot", role) for role in ("viewer", "editor", "admin")}


@pytest.fixture
def api(store: SqlStore, tokens: dict[str, str]) -> Iterator[Api]:
    with TestClient(create_app(store), raise_server_exceptions=False) as http:
        yield Api(http, tokens)


@pytest.fixture
def live(db_url: str, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start servers on the test's database; all are stopped at the end."""
    started: list[LiveServer] = []

    def start(port: int | None = None, *args: str, verify: ssl.SSLContext | None = None
              ) -> LiveServer:
        server = start_server(db_url, tmp_path / "server.log", port, *args, verify=verify)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
