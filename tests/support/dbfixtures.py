"""pytest fixtures for tests that run against both store backends: SQLite and PostgreSQL.

``db_url`` is parametrized over ``sqlite`` and ``postgresql``; each test gets a fresh database
(for PostgreSQL, a copy of a migrated template, which is fast). The PostgreSQL cluster is
started once per session. Without PostgreSQL binaries the ``postgresql`` cases fail, never skip:
scripts/test installs Debian's ``postgresql`` as root, and names it otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pgcluster
import pytest


@pytest.fixture(scope="session")
def pg() -> Iterator[pgcluster.Cluster]:
    try:
        with pgcluster.running() as cluster:
            yield cluster
    except pgcluster.PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def pg_template(pg: pgcluster.Cluster) -> str:
    from meshbridge.store import open_store

    name = pg.create_database()
    open_store(pg.url(name)).close()  # migrated once; copies start at head
    return name


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'meshbridge.db'}"
        return
    cluster: pgcluster.Cluster = request.getfixturevalue("pg")
    template: str = request.getfixturevalue("pg_template")
    name = cluster.create_database(template)
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """Like ``db_url``, but a database with no schema at all."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    cluster: pgcluster.Cluster = request.getfixturevalue("pg")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)
