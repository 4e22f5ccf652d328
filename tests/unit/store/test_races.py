"""Concurrent writers of one row, database errors as the error tree's, a database restart."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pgcluster
import pytest

from meshbridge.errors import StateError, StateUnavailable
from meshbridge.store import ResourceRow, SqlStore, open_store
from meshbridge.store.schema import UNCOUNTED_BLOBS
from meshbridge.usecases.apply import VOLATILE_KINDS


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def test_concurrent_writers_of_one_row_all_succeed(store: SqlStore) -> None:
    """400 status writes from 8 threads onto 4 rows (a DELETE+INSERT lost 77 of them on
    PostgreSQL with a unique violation): every one is stored, the last of each row stays."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def writer(i: int) -> None:
        start.wait()
        for n in range(50):
            try:
                with store.transaction():
                    store.put_blob("status", f"cluster{n % 4}", f"{i}:{n}".encode())
                    store.put_resources([ResourceRow("Cluster", "", f"c{n % 4}", f"u{n % 4}", n,
                                                     "2024-01-01T00:00:00Z", f'{{"n":{n}}}')])
                result = "ok"
            except StateError as exc:
                result = type(exc).__name__
            with lock:
                outcomes[result] += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == Counter({"ok": 400})
    assert sorted(store.list_blobs("status")) == [f"cluster{k}" for k in range(4)]
    assert len(store.list_resources("Cluster")) == 4


def test_records_of_what_was_done_do_not_move_the_state_counter(store: SqlStore) -> None:
    """A reconcile's status (written after every run) invalidates no cache keyed by revisions."""
    before = store.revisions()
    store.put_blob("status", "east", b"{}")
    store.delete_blob("status", "east")
    assert store.revisions() == before
    store.put_blob("pki.cert", "east", b"x")
    assert store.revisions().state == before.state + 1


def test_the_uncounted_kinds_are_the_ones_apply_calls_volatile() -> None:
    assert frozenset(VOLATILE_KINDS) == UNCOUNTED_BLOBS


def test_a_database_restart_costs_the_statements_in_flight_only() -> None:
    """With PostgreSQL down, the store says so (StateUnavailable, never a raw driver error);
    once it is back, the pooled connections that died with it are replaced before use: the
    first statement after the restart already succeeds."""
    running = pgcluster.running()  # no PostgreSQL: PostgresMissing fails the test
    cluster = running.__enter__()
    try:
        store = open_store(cluster.url())
        try:
            store.put_blob("k", "n0", b"1")
            _use_connections(store, 4)  # then idle in the pool
            cluster.stop()
            cluster.start()
            for n in range(20):  # each would have met a dead pooled connection
                store.put_blob("k", f"again{n}", b"2")
            assert store.get_blob("k", "n0") == b"1"
            cluster.stop()
            with pytest.raises(StateUnavailable):
                store.put_blob("k", "down", b"1")
            with pytest.raises(StateUnavailable):
                store.ping()
            cluster.start()
            store.put_blob("k", "up", b"1")
        finally:
            store.close()
    finally:
        running.__exit__(None, None, None)


def _use_connections(store: SqlStore, count: int) -> None:
    """``count`` pooled connections, each used at the same time by a thread of its own."""
    inside = threading.Barrier(count)

    def use(n: int) -> None:
        with store.reading():
            store.revisions()
            inside.wait()

    threads = [threading.Thread(target=use, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
