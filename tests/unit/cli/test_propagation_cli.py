"""The CLI of propagation without clusters: durations of --timeout, what is refused as usage
(exit 2, nothing read or written), and status --propagation on a store that holds a recorded
verdict's change (tests/fixtures/istiod answers) but no cluster to reach."""

from __future__ import annotations

import json

import pytest
import typer
from istiodanswers import applied

from meshbridge.cli.propagation import duration
from meshbridge.store import open_store
from meshbridge.usecases.apply import STATUS_KIND


@pytest.mark.parametrize(("text", "seconds"), [("2m", 120), ("90s", 90), ("1m30s", 90),
                                               ("1h", 3600), ("45", 45), ("0.5", 0.5),
                                               ("1.5m", 90)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "m", "-3", "0", "1m-2s", "two minutes"])
def test_what_is_no_duration(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        duration(text)


@pytest.mark.parametrize("args", [
    ["apply", "-f", "nowhere.yaml", "--wait", "--dry-run"],
    ["apply", "-f", "nowhere.yaml", "--wait", "--timeout", "soon"],
    ["status", "--propagation", "-o", "yaml"],
    ["status", "InboundIntent-bar-httpbin"],
    ["status", "InboundIntent//httpbin"],
])
def test_usage_errors_exit_2(cli, args: list[str]) -> None:
    assert cli(*args).exit_code == 2


def test_status_propagation_without_a_store_says_so(cli) -> None:
    done = cli("status", "--propagation")
    assert done.exit_code == 0
    assert "nothing applied yet" in done.stderr


def test_a_cluster_without_a_recorded_kubeconfig_is_reported_not_reached(cli, tmp_path) -> None:
    store = open_store(str(tmp_path / "state" / "state.db"))
    try:
        store.put_blob(STATUS_KIND, "cluster1", json.dumps(applied("synced", "cluster1")).encode())
    finally:
        store.close()
    done = cli("status", "--propagation", "-o", "json")
    assert done.exit_code == 1
    [view] = json.loads(done.stdout)
    assert view["cluster"] == "cluster1"
    assert view["state"] == "unreachable"
    assert "no kubeconfig recorded for it by the last apply" in view["reason"]
