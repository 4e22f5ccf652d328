"""``meshbridge apply`` on a store the server's replicas use takes the same cluster leases: it
waits for a replica reconciling one of its clusters, says so, and gives up with an error naming
the holder; it takes every lease or none; and which replica owns a cluster moves only when
replicas come or go."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshbridge.errors import StateLocked
from meshbridge.server.leases import holding, lease_name, owner
from meshbridge.store import SqlStore, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = open_store(str(tmp_path / "state.db"))
    yield opened
    opened.close()


def test_apply_waits_for_a_replica_then_names_it(store: SqlStore) -> None:
    assert store.acquire_lease(lease_name("east"), "replica-1", 30) is not None
    told: list[str] = []
    with (
        pytest.raises(StateLocked, match=r"east \(replica-1\)"),
        holding(store, ["west", "east"], holder="cli", wait=1.0, waiting=told.append),
    ):
        pass
    assert len(told) == 1 and "east (replica-1)" in told[0]
    now, leases = store.leases("cluster:")  # none kept: not even west
    assert [lease.name for lease in leases if lease.holder == "cli" and lease.expires > now] == []


def test_apply_takes_the_leases_once_the_replica_releases_them(store: SqlStore) -> None:
    assert store.acquire_lease(lease_name("east"), "replica-1", 30) is not None
    threading.Timer(0.7, store.release_leases, ("replica-1", [lease_name("east")])).start()
    with holding(store, ["east"], holder="cli", wait=10.0):
        # held by the CLI now: a replica cannot take it
        assert store.acquire_lease(lease_name("east"), "replica-1", 30) is None
    # released at the end
    taken = store.acquire_lease(lease_name("east"), "replica-1", 30)
    assert taken is not None and taken.term == 3  # replica-1, cli, replica-1 again


def test_a_dry_run_takes_nothing(store: SqlStore) -> None:
    assert store.acquire_lease(lease_name("east"), "replica-1", 30) is not None
    with holding(store, ["east"], writes=False, wait=0.1):
        pass


def test_owners_move_only_with_the_replicas() -> None:
    clusters = [f"c{i:03d}" for i in range(60)]
    three = {c: owner(c, ["r1", "r2", "r3"]) for c in clusters}
    assert set(three.values()) == {"r1", "r2", "r3"}
    two = {c: owner(c, ["r1", "r3"]) for c in clusters}
    assert all(two[c] == three[c] for c in clusters if three[c] != "r2")
    assert owner("c000", []) is None
