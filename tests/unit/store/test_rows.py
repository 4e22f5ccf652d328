"""Store behaviour the server relies on: counters, transactions per thread, rows."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from meshbridge.store import AuditEntry, ResourceRow, SqlStore, TokenRecord, open_store
from meshbridge.viprecord import VipRecord


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    opened = open_store(db_url)
    yield opened
    opened.close()


def _row(name: str, version: int) -> ResourceRow:
    return ResourceRow("Cluster", "", name, f"uid-{name}", version, "2024-01-01T00:00:00Z", "{}")


def test_counters_move_with_writes(store: SqlStore) -> None:
    start = store.revisions()
    store.put_blob("k", "n", b"1")
    assert store.revisions().state == start.state + 1
    store.delete_blob("k", "missing")
    assert store.revisions().state == start.state + 1
    assert store.bump_resources() == start.resources + 1
    store.replace_vip_records([VipRecord("c", "k", "240.0.0.1", None)])
    assert store.revisions().state == start.state + 2


def test_update_vip_records_writes_the_difference(store: SqlStore) -> None:
    before = [VipRecord("c", "a", "240.0.0.1", None), VipRecord("c", "b", "240.0.0.2", None)]
    store.replace_vip_records(before)
    after = [VipRecord("c", "a", "240.0.0.1", None), VipRecord("c", "b", "240.0.0.2", 3),
             VipRecord("d", "x", "240.0.0.1", None)]
    store.update_vip_records(before, after)
    assert store.vip_records() == sorted(after)
    state = store.revisions().state
    store.update_vip_records(after, after)
    assert store.revisions().state == state


def test_a_failed_transaction_leaves_nothing(store: SqlStore) -> None:
    start = store.revisions()

    def write_then_fail() -> None:
        with store.transaction():
            store.lock_writes()
            store.put_blob("k", "n", b"1")
            store.bump_resources()
            store.put_resources([_row("east", 1)])
            raise RuntimeError("rollback")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert store.get_blob("k", "n") is None
    assert store.revisions() == start
    assert store.list_resources() == []


def test_transactions_are_per_thread(store: SqlStore) -> None:
    """A second thread's write is not swallowed into the first thread's open transaction."""
    entered, release = threading.Event(), threading.Event()
    seen: list[bytes | None] = []

    def writer() -> None:
        with store.transaction():
            store.put_blob("k", "a", b"A")
            entered.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    assert entered.wait(10)
    with store.reading():
        seen.append(store.get_blob("k", "a"))  # not committed yet: invisible
    release.set()
    t.join()
    assert seen == [None]
    assert store.get_blob("k", "a") == b"A"


def test_resources_audit_and_tokens(store: SqlStore) -> None:
    store.put_resources([_row("east", 1), _row("west", 1)])
    store.put_resources([_row("east", 2)])
    assert [(r.name, r.resource_version) for r in store.list_resources("Cluster")] == [
        ("east", 2), ("west", 1)]
    assert store.get_resource("Cluster", "", "east") == _row("east", 2)
    assert store.count_resources() == {"Cluster": 2}
    store.delete_resources([("Cluster", "", "west")])
    assert store.get_resource("Cluster", "", "west") is None

    store.add_audit([AuditEntry(0, "t", "me", "create", "Cluster", "", "east", None, 1),
                     AuditEntry(0, "t", "you", "update", "Cluster", "", "east", 1, 2)])
    entries = store.list_audit()
    assert [e.verb for e in entries] == ["create", "update"] and entries[0].id < entries[1].id
    assert [e.actor for e in store.list_audit(after=entries[0].id)] == ["you"]
    assert [e.actor for e in store.list_audit(actor="me")] == ["me"]

    store.add_token(TokenRecord("abc", "bot", "viewer", "d" * 64, "t"))
    assert store.get_token("abc") == TokenRecord("abc", "bot", "viewer", "d" * 64, "t")
    assert store.revoke_token("bot", "later") is True
    assert store.revoke_token("bot", "later") is False
    assert store.find_token("bot").revoked == "later"
