"""What operators of several replicas read: per-cluster metrics for alerting, the reconcile
records (who reconciled which cluster, under which lease term), and `meshbridge status
--server`. The records are written as a replica's reconciler writes them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from apitest import Api, LiveServer, viewer_cli_server
from typer.testing import CliRunner

from meshbridge.cli import app
from meshbridge.kube import ClusterReport
from meshbridge.store import SqlStore
from meshbridge.usecases.apply import record_status


def _history(store: SqlStore) -> None:
    """east: applied, then failed twice; west: a run in progress by r2, holding the lease."""
    store.heartbeat("r1", "host-a", 11)
    store.heartbeat("r2", "host-b", 22)
    run = store.start_run("east", "r1", 1, 5)
    store.finish_run(run, "Applied", "", 40)
    for _ in range(2):
        run = store.start_run("east", "r1", 1, 6)
        store.finish_run(run, "Unreachable", "connection refused", 41)
    assert store.acquire_lease("cluster:west", "r2", 60) is not None
    store.start_run("west", "r2", 1, 6)
    record_status(store, [ClusterReport("east", "Unreachable", error="connection refused")], {})


def test_metrics_per_cluster(api: Api, store: SqlStore) -> None:
    _history(store)
    text = api.get("/metrics").text
    lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
             if line.startswith("meshbridge_cluster")}
    assert lines['meshbridge_cluster_reconcile_failures{cluster="east"}'] == 2
    assert lines['meshbridge_cluster_reconcile_failures{cluster="west"}'] == 0
    assert lines['meshbridge_cluster_objects{cluster="east"}'] == 41
    assert lines['meshbridge_cluster_last_success_timestamp_seconds{cluster="east"}'] > 1.7e9
    assert 'meshbridge_cluster_last_success_timestamp_seconds{cluster="west"}' not in lines
    assert lines['meshbridge_cluster_reconciling{cluster="west",replica="r2"}'] == 1


def test_status_and_reconciles_say_who_reconciles_what(api: Api, store: SqlStore) -> None:
    _history(store)
    status = api.get("/api/v1/status").json()
    items = {s["cluster"]: s for s in status["items"]}
    assert items["east"]["state"] == "Unreachable" and items["east"]["failures"] == 2
    assert items["east"]["lastSuccess"] is not None and items["east"]["lease"] is None
    assert items["west"]["state"] == "Pending"
    assert items["west"]["lastRun"]["finished"] is None
    assert items["west"]["lease"]["holder"] == "r2"
    assert [r["id"] for r in status["replicas"]] == ["r1", "r2"]
    runs = api.get("/api/v1/reconciles", params={"limit": 2}).json()
    assert [(r["cluster"], r["replica"], r["state"]) for r in runs["items"]] == [
        ("east", "r1", "Applied"), ("east", "r1", "Unreachable")]
    rest = api.get("/api/v1/reconciles", params={"after": runs["next"]}).json()["items"]
    assert [(r["cluster"], r["state"]) for r in rest] == [("east", "Unreachable"), ("west", None)]
    only = api.get("/api/v1/reconciles", params={"cluster": "west"}).json()["items"]
    assert [r["replica"] for r in only] == ["r2"]


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the client does not care which database the server has


def test_status_from_the_server(live: Callable[..., LiveServer], db_url: str,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    server = viewer_cli_server(live, db_url, monkeypatch, _history)
    done = CliRunner().invoke(app, ["status", "--server", server.url], catch_exceptions=False)
    assert done.exit_code == 1, done.output  # east's last reconcile failed
    out = done.stdout
    # (the test terminal is narrow: rich shortens the columns)
    east = next(line for line in out.splitlines() if line.startswith("east")).split()
    assert east[1].startswith("Unreach") and "r1" in east and east[-1] == "2"  # failures
    west = next(line for line in out.splitlines() if line.startswith("west")).split()
    assert west[1] == "Pending" and "r2" in west
    assert "replicas: r1" in out and "r2" in out
