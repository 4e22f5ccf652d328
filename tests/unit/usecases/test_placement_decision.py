"""The placement decision (usecases.placement.decide), rule by rule, and its records: a move,
the grace period, an unreadable cluster, Apps no longer discovered; the store's rows and
counter; ``discover -o yaml`` documents read back by ``--placement``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from intents import doc

from meshbridge import compile as mbcompile
from meshbridge.errors import InvalidInput
from meshbridge.kube.placement import Reading
from meshbridge.loading import Source, load
from meshbridge.store import PlacementRow, open_store
from meshbridge.usecases.placement import (
    as_documents,
    decide,
    from_file,
    placement_of,
    record,
)

APP = ("bar", "httpbin")
MAY = {APP: ("c1", "c2", "c3")}
GRACE = 300.0


def seen(cluster: str, ready: int | None = 1) -> Reading:
    """A cluster read: the App found with ``ready`` instances, or (None) not found."""
    return Reading(cluster, {} if ready is None else {APP: ready})


def down(cluster: str) -> Reading:
    return Reading(cluster, None, "cannot reach the cluster's API server: refused")


def step(rows: tuple[PlacementRow, ...], now: float, *readings: Reading):
    return decide(rows, readings, MAY, now, GRACE)


def placed(decision) -> set[str]:
    return set(placement_of(decision.rows).get(APP, ()))


def whats(decision) -> list[tuple[str, str]]:
    return [(c.cluster, c.what) for c in decision.changes]


def test_found_then_moved_at_once_when_it_runs_elsewhere() -> None:
    first = step((), 0, seen("c1"), seen("c2", None))
    assert placed(first) == {"c1"} and whats(first) == [("c1", "found")] and first.moved
    moved = step(first.rows, 10, seen("c1", None), seen("c2", 2))
    assert placed(moved) == {"c2"}
    assert whats(moved) == [("c1", "left"), ("c2", "found")]


def test_gone_everywhere_keeps_its_placement_for_the_grace_period_then_drops_it() -> None:
    first = step((), 0, seen("c1"), seen("c2"))
    gone = step(first.rows, 100, seen("c1", None), seen("c2", None))
    assert placed(gone) == {"c1", "c2"}
    assert whats(gone) == [("c1", "gone"), ("c2", "gone")] and not gone.moved
    assert {r.gone for r in gone.rows} == {100}
    still = step(gone.rows, 100 + GRACE - 1)  # only time passes
    assert placed(still) == {"c1", "c2"} and not still.changes and not still.written
    over = step(still.rows, 100 + GRACE)
    assert placed(over) == set() and whats(over) == [("c1", "dropped"), ("c2", "dropped")]
    assert over.moved


def test_back_within_the_grace_period_changes_nothing_that_renders() -> None:
    first = step((), 0, seen("c1"))
    gone = step(first.rows, 5, seen("c1", None))
    back = step(gone.rows, 6, seen("c1", 3))
    assert placed(back) == {"c1"} and whats(back) == [("c1", "back")] and not back.moved
    assert back.rows[0].found == 0 and back.rows[0].ready == 3


def test_back_elsewhere_within_the_grace_period_moves_there() -> None:
    gone = step(step((), 0, seen("c1")).rows, 5, seen("c1", None))
    there = step(gone.rows, 6, seen("c1", None), seen("c3"))
    assert placed(there) == {"c3"} and whats(there) == [("c1", "left"), ("c3", "found")]


def test_an_unreadable_cluster_keeps_its_placements() -> None:
    first = step((), 0, seen("c1"), seen("c2"))
    # c1 cannot be read while the App leaves c2: c1 is not "no instances"
    later = step(first.rows, 50, down("c1"), seen("c2", None))
    assert placed(later) == {"c1"} and whats(later) == [("c2", "left")]
    # and it is never dropped for being unreadable, however long
    much_later = step(later.rows, 50 + 10 * GRACE, down("c1"))
    assert placed(much_later) == {"c1"} and not much_later.changes


def test_apps_no_longer_discovered_there_are_forgotten() -> None:
    first = step((), 0, seen("c1"), seen("c2"))
    fewer = decide(first.rows, [], {APP: ("c2",)}, 1, GRACE)
    assert placed(fewer) == {"c2"} and whats(fewer) == [("c1", "forgotten")]
    none = decide(first.rows, [], {}, 1, GRACE)
    assert none.rows == () and none.moved


def test_a_ready_count_is_written_but_moves_nothing() -> None:
    first = step((), 0, seen("c1", 1))
    more = step(first.rows, 1, seen("c1", 4))
    assert not more.moved and not more.changes and [r.ready for r in more.written] == [4]


# ------------------------------------------------------------------------------- the store


def mesh() -> mbcompile.Blueprint:
    docs = [doc("Cluster", f"c{i}", {"gateway": {"address": f"10.0.0.{i}"},
                                      "kubeconfig": {"path": "/k"}}) for i in (1, 2, 3)]
    docs += [doc("App", "httpbin", {"discover": {}, "serviceAccount": "bin"}, "bar"),
             doc("Mesh", "default", {"discovery": {"gracePeriod": "2s"}})]
    intents = load([Source("mesh.yaml", yaml.safe_dump_all(docs))])
    return mbcompile.blueprint(intents, [])


def test_recorded_changes_move_the_counter_and_are_audited(tmp_path: Path) -> None:
    snap = mesh().snapshot
    store = open_store(str(tmp_path / "state.db"))
    try:
        before = store.revisions().placements
        first = record(store, snap, [seen("c2", 2)], "test")
        assert placed(first) == {"c2"} and store.revisions().placements == before + 1
        assert placement_of(store.placement_rows()) == {APP: frozenset({"c2"})}
        again = record(store, snap, [seen("c2", 5)], "test")  # a count: no move
        assert not again.moved and store.revisions().placements == before + 1
        assert store.placement_rows()[0].ready == 5
        audit = [(e.verb, e.kind, e.namespace, e.name, e.actor) for e in store.list_audit()]
        assert audit == [("found", "Placement", "bar", "httpbin@c2", "test")]
    finally:
        store.close()


def test_discover_documents_read_back_as_the_same_placement(tmp_path: Path) -> None:
    snap = mesh().snapshot
    placement = {APP: frozenset({"c3", "c1"})}
    docs = as_documents(snap, placement)
    assert docs == [{"apiVersion": "meshbridge.dev/v1alpha1", "kind": "App",
                     "metadata": {"name": "httpbin", "namespace": "bar"},
                     "spec": {"clusters": ["c1", "c3"], "serviceAccount": "bin"}}]
    text = yaml.safe_dump_all(docs, sort_keys=False)
    assert from_file(snap, Source("placement.yaml", text)) == placement


def test_a_placement_file_naming_an_app_that_is_not_discovered_is_refused() -> None:
    snap = mesh().snapshot
    text = yaml.safe_dump(doc("App", "other", {"clusters": ["c1"]}, "bar"))
    with pytest.raises(InvalidInput) as caught:
        from_file(snap, Source("placement.yaml", text))
    assert "placement.yaml#1 App/other metadata.name: the intents have no App bar/other" in str(
        caught.value)
