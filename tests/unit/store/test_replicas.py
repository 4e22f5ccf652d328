"""Leases with an expiry on the database's clock: one holder at a time, terms, renewal, and the
reconcile history they are recorded with."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from meshbridge.store import SqlStore, open_store


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def test_one_holder_at_a_time_until_the_lease_expires(store: SqlStore) -> None:
    a = store.acquire_lease("cluster:east", "a", 0.5)
    assert a is not None and a.term == 1
    assert store.acquire_lease("cluster:east", "b", 10) is None
    again = store.acquire_lease("cluster:east", "a", 0.5)  # the holder extends it, same term
    assert again is not None and again.term == 1 and again.expires >= a.expires
    time.sleep(0.6)
    assert store.renew_leases("a", ["cluster:east"], 10) == set()  # expired: not renewed
    b = store.acquire_lease("cluster:east", "b", 10)
    assert b is not None and b.term == 2
    assert store.acquire_lease("cluster:east", "a", 10) is None
    assert store.renew_leases("b", ["cluster:east", "cluster:west"], 10) == {"cluster:east"}
    store.release_leases("b", ["cluster:east"])
    c = store.acquire_lease("cluster:east", "c", 10)
    assert c is not None and c.term == 3
    _, leases = store.leases("cluster:")
    assert [(x.name, x.holder, x.term) for x in leases] == [("cluster:east", "c", 3)]


def test_racing_takers_of_a_free_lease_one_wins(store: SqlStore) -> None:
    lock = threading.Lock()

    def take(name: str, who: str, start: threading.Barrier, winners: list[str]) -> None:
        start.wait()
        if store.acquire_lease(name, who, 30) is not None:
            with lock:
                winners.append(who)

    for round_ in range(5):
        winners: list[str] = []
        start = threading.Barrier(6)
        threads = [threading.Thread(target=take, args=(f"cluster:r{round_}", f"r{i}", start, winners))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1, winners


def test_runs_record_who_reconciled_what_and_the_last_success(store: SqlStore) -> None:
    first = store.start_run("east", "a", 1, 7)
    store.finish_run(first, "Applied", "", 12)
    failed = store.start_run("east", "a", 1, 8)
    store.finish_run(failed, "Unreachable", "connection refused", 12)
    running = store.start_run("east", "b", 2, 8)
    runs = store.runs("east")
    assert [(r.replica, r.term, r.state) for r in runs] == [
        ("a", 1, "Applied"), ("a", 1, "Unreachable"), ("b", 2, None)]
    assert runs[0].started <= runs[0].finished <= runs[1].started  # type: ignore[operator]
    summary = store.cluster_runs()["east"]
    assert summary.last.id == running and summary.last.finished is None
    assert summary.last_success == runs[0].finished and summary.failures == 1


def test_heartbeats_list_replicas(store: SqlStore) -> None:
    store.heartbeat("r1", "host", 1)
    now = store.heartbeat("r2", "host", 2)
    seen_at, replicas = store.replicas()
    assert [r.id for r in replicas] == ["r1", "r2"] and seen_at >= now
    store.forget_replica("r1")
    assert [r.id for r in store.replicas()[1]] == ["r2"]


def test_leases_heartbeats_and_runs_do_not_move_the_counters(store: SqlStore) -> None:
    """What the reconcilers write every second must not invalidate any server's caches."""
    with store.reading():
        before = store.revisions()
    store.heartbeat("r1", "host", 1)
    assert store.acquire_lease("cluster:east", "r1", 10) is not None
    store.renew_leases("r1", ["cluster:east"], 10)
    run = store.start_run("east", "r1", 1, before.resources)
    store.finish_run(run, "Applied", "", 3)
    store.release_leases("r1", ["cluster:east"])
    store.forget_replica("r1")
    with store.reading():
        assert store.revisions() == before
