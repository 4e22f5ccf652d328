"""A real `meshbridge serve` (uvicorn) process: racing clients, restarts, several processes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from itertools import pairwise

import httpx
import pytest
from apitest import LiveServer
from intents import doc

from meshbridge.server.tokens import create_token
from meshbridge.store import open_store

CLIENTS = 8
ROUNDS = 6


def _editor(db_url: str) -> dict[str, str]:
    store = open_store(db_url)
    try:
        return {"Authorization": f"Bearer {create_token(store, 'racer', 'editor')}"}
    finally:
        store.close()


def _counter_cluster(name: str) -> dict:
    return doc("Cluster", name, {"gateway": {"address": "10.0.0.1"}}, labels={"count": "0"})


def _race(urls: list[str], headers: dict[str, str]) -> tuple[Counter, dict[int, int]]:
    """CLIENTS threads, each ROUNDS read-modify-write increments of one shared label, retrying
    on 409; and each its own cluster, written ROUNDS times without a version."""
    outcomes: Counter = Counter()
    own_writes: dict[int, int] = {}
    lock = threading.Lock()

    def client(i: int) -> None:
        base = urls[i % len(urls)]
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            done = 0
            while done < ROUNDS:
                current = http.get("/api/v1/clusters/shared").json()
                labels = current["metadata"]["labels"]
                labels["count"] = str(int(labels["count"]) + 1)
                r = http.put("/api/v1/clusters/shared", json=current)
                with lock:
                    outcomes[r.status_code] += 1
                if r.status_code == 200:
                    done += 1
                else:
                    assert r.status_code == 409, r.text
            mine = _counter_cluster(f"own{i}")
            for n in range(1, ROUNDS + 1):
                mine["metadata"]["labels"]["count"] = str(n)
                assert http.put(f"/api/v1/clusters/own{i}", json=mine).status_code in (200, 201)
            with lock:
                own_writes[i] = ROUNDS

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    return outcomes, own_writes


def _check_race(base: str, headers: dict[str, str], outcomes: Counter, own: dict[int, int]) -> None:
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        shared = http.get("/api/v1/clusters/shared").json()
        assert shared["metadata"]["labels"]["count"] == str(CLIENTS * ROUNDS), "a write was lost"
        assert outcomes[200] == CLIENTS * ROUNDS
        for i in own:
            got = http.get(f"/api/v1/clusters/own{i}").json()
            assert got["metadata"]["labels"]["count"] == str(ROUNDS)
        audit = http.get("/api/v1/audit", params={"kind": "Cluster", "limit": 1000}).json()["items"]
        shared_updates = [a for a in audit if a["name"] == "shared" and a["verb"] == "update"]
        assert len(shared_updates) == CLIENTS * ROUNDS
        versions = [(a["beforeResourceVersion"], a["afterResourceVersion"]) for a in shared_updates]
        for (_, after), (before, _) in pairwise(versions):
            assert before == after, "an update did not start from the version before it"


def test_racing_clients_lose_no_write(live: Callable[..., LiveServer], db_url: str) -> None:
    headers = _editor(db_url)
    server = live()
    assert httpx.put(f"{server.url}/api/v1/clusters/shared", json=_counter_cluster("shared"),
                     headers=headers).status_code == 201
    outcomes, own = _race([server.url], headers)
    _check_race(server.url, headers, outcomes, own)


def test_two_server_processes_on_one_database(live: Callable[..., LiveServer], db_url: str) -> None:
    headers = _editor(db_url)
    first, second = live(), live()
    assert httpx.put(f"{first.url}/api/v1/clusters/shared", json=_counter_cluster("shared"),
                     headers=headers).status_code == 201
    outcomes, own = _race([first.url, second.url], headers)
    _check_race(second.url, headers, outcomes, own)
    _check_race(first.url, headers, outcomes, own)


def test_data_survives_a_restart(live: Callable[..., LiveServer], db_url: str) -> None:
    headers = _editor(db_url)
    server = live()
    from intents import example_yaml

    r = httpx.post(f"{server.url}/api/v1/apply", content=example_yaml("helloworld-lb").encode(),
                   headers={**headers, "Content-Type": "application/yaml"})
    assert r.status_code == 200
    apps = httpx.get(f"{server.url}/api/v1/apps", headers=headers).json()["items"]
    manifests = httpx.get(f"{server.url}/api/v1/clusters/cluster1/manifests",
                          headers={**headers, "Accept": "application/yaml"}).content
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/healthz", timeout=1)
    again = live(port)
    assert httpx.get(f"{again.url}/api/v1/apps", headers=headers).json()["items"] == apps
    after = httpx.get(f"{again.url}/api/v1/clusters/cluster1/manifests",
                      headers={**headers, "Accept": "application/yaml"}).content
    assert after == manifests
    audit = httpx.get(f"{again.url}/api/v1/audit", headers=headers).json()["items"]
    assert {a["actor"] for a in audit} >= {"racer"}
