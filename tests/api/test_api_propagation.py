"""Propagation on the server: what its reconciler recorded about each cluster's last change
(verdicts judged from istiod's real answers, tests/fixtures/istiod) in ``/api/v1/status``,
whether the documents' revision is delivered everywhere, the per-cluster gauges of
``/metrics``, and ``meshbridge status --propagation --server`` / ``status KIND/NS/NAME
--server``."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from apitest import Api, LiveServer, viewer_cli_server
from istiodanswers import applied, reading
from typer.testing import CliRunner

from meshbridge.cli import app
from meshbridge.store import SqlStore
from meshbridge.usecases.apply import STATUS_KIND
from meshbridge.usecases.delivery import note


def _reconciled(store: SqlStore) -> None:
    """cluster1 delivered, cluster2 with a proxy gone since the change, both at the store's
    revision; as the reconciler and its propagation watch record them."""
    revision = store.revisions().resources
    for cluster in ("cluster1", "cluster2"):
        run = store.start_run(cluster, "r1", 1, revision)
        store.finish_run(run, "Applied", "", 3)
    records = {"cluster1": applied("synced", "cluster1"),
               "cluster2": applied("disconnected", "cluster2")}
    for cluster, record in records.items():
        store.put_blob(STATUS_KIND, cluster, json.dumps(record).encode())
    note(store, records["cluster1"], reading("synced", "cluster1"))
    note(store, records["cluster2"], reading("synced", "cluster2"))  # at the change: httpbin
    note(store, records["cluster2"], reading("disconnected", "cluster2"))  # then it went


def test_status_carries_each_clusters_propagation_and_the_revisions(api: Api,
                                                                     store: SqlStore) -> None:
    _reconciled(store)
    status = api.get("/api/v1/status").json()
    items = {s["cluster"]: s for s in status["items"]}
    assert items["cluster1"]["propagation"]["state"] == "delivered"
    two = items["cluster2"]["propagation"]
    assert (two["state"], two["disconnected"]) == ("observed", ["httpbin-lab.bar"])
    assert items["cluster1"]["objects"][0]["resourceVersion"]
    revision = status["propagation"]
    assert revision["revision"] == str(store.revisions().resources)
    assert (revision["delivered"], revision["pending"]) == (False, ["cluster2"])


def test_a_change_not_looked_at_yet_has_no_verdict(api: Api, store: SqlStore) -> None:
    _reconciled(store)
    moved = applied("synced", "cluster1")
    moved["objects"][0]["resourceVersion"] = "1"  # a new apply: a change nobody judged
    store.put_blob(STATUS_KIND, "cluster1", json.dumps(moved).encode())
    items = {s["cluster"]: s for s in api.get("/api/v1/status").json()["items"]}
    assert items["cluster1"]["propagation"] is None


def test_metrics_say_which_clusters_are_delivered_and_which_proxies_are_stale(
    api: Api, store: SqlStore
) -> None:
    _reconciled(store)
    lines = {line.split(" ")[0]: float(line.split(" ")[1])
             for line in api.get("/metrics").text.splitlines()
             if line.startswith("meshbridge_cluster_")}
    assert lines['meshbridge_cluster_delivered{cluster="cluster1"}'] == 1
    assert lines['meshbridge_cluster_delivered{cluster="cluster2"}'] == 0
    assert lines['meshbridge_cluster_stale_proxies{cluster="cluster2"}'] == 1
    assert lines['meshbridge_cluster_proxies{cluster="cluster1"}'] == 2
    assert lines['meshbridge_cluster_proxy_nacks{cluster="cluster1"}'] == 0


def test_status_propagation_from_the_server(live: Callable[..., LiveServer], db_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    server = viewer_cli_server(live, db_url, monkeypatch, _reconciled)

    def run(*args: str) -> tuple[int, str]:
        done = CliRunner().invoke(app, ["status", *args, "--server", server.url],
                                  catch_exceptions=False)
        return done.exit_code, done.stdout

    code, out = run("--propagation", "-o", "json")
    assert code == 1  # cluster2 is not delivered
    views = {v["cluster"]: v for v in json.loads(out)}
    assert views["cluster1"]["state"] == "delivered"
    assert views["cluster2"]["disconnected"] == ["httpbin-lab.bar"]
    assert set(views["cluster1"]) >= {"cluster", "state", "proxies", "acked", "nacks"}
    code, out = run("InboundIntent/bar/httpbin", "-o", "json")
    found = json.loads(out)
    assert [c["cluster"] for c in found["clusters"]] == ["cluster1", "cluster2"]
    assert code == 1
