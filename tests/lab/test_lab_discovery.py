"""``examples/discovered`` in the lab, with ``meshbridge serve`` reconciling and watching the
lab's clusters: httpbin moves from cluster1 to cluster2 (``mesh-lab undeploy``, then ``deploy``)
and sleep's requests, to the same name throughout, reach it in cluster2 without anyone
editing an intent or running apply. The requests sent during the move are counted and
reported; the move's bound is hang detection, not a timing check (bench/discovery.py
measures how long it takes)."""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import time
from typing import Any

import pytest
from labrun import EXAMPLES, MESH_LAB, LabRun

pytestmark = pytest.mark.lab

SLEEP = "sleep.foo@cluster1"
URL = "http://httpbin.bar.svc.cluster.local:8000/headers"
MOVE_BOUND = 240.0  # seconds: far past what a move takes; only so that a hang fails
SETTLED = 20  # answers in a row from cluster2 that end the move


class Requests:
    """sleep's requests, sent every 0.1 s on a new connection each, read as they come."""

    def __init__(self, run: LabRun) -> None:
        self.answers: list[tuple[float, dict[str, Any]]] = []
        self.process = subprocess.Popen(
            [str(MESH_LAB), "request", "--dir", str(run.dir), "--from", SLEEP, "--count",
             "100000", "--interval", "0.1", "--timeout", "2", URL],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
            text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self.answers.append((time.monotonic(), json.loads(line)))

    def since(self, start: float) -> list[tuple[float, dict[str, Any]]]:
        return [(t, a) for t, a in list(self.answers) if t >= start]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def where(answer: dict[str, Any]) -> str:
    return str(answer.get("cluster")) if answer.get("status") == 200 else "failed"


def test_a_discovered_app_moves_and_its_client_follows(
    mesh_lab_run: LabRun, capsys: pytest.CaptureFixture[str]
) -> None:
    mesh_lab_run.up(EXAMPLES / "discovered",
                    deploy=("sleep.foo@cluster1", "httpbin.bar@cluster1"))
    home = mesh_lab_run.request(SLEEP, URL, count=10)
    assert collections.Counter(where(a) for a in home) == {"cluster1": 10}, home

    served = mesh_lab_run.mesh_lab("serve")
    assert served.returncode == 0, served.stderr[-4000:]
    requests = Requests(mesh_lab_run)
    try:
        start = time.monotonic()
        moved = mesh_lab_run.mesh_lab("undeploy", "httpbin.bar@cluster1")
        assert moved.returncode == 0, moved.stderr
        moved = mesh_lab_run.mesh_lab("deploy", "httpbin.bar@cluster2")
        assert moved.returncode == 0, moved.stderr
        deployed = time.monotonic()

        def settled() -> bool:
            tail = [where(a) for _, a in requests.since(start)][-SETTLED:]
            return len(tail) == SETTLED and set(tail) == {"cluster2"}

        while not settled():
            assert time.monotonic() - start < MOVE_BOUND, (
                f"sleep's requests did not reach httpbin in cluster2 within {MOVE_BOUND:.0f} s "
                f"of the move: {collections.Counter(where(a) for _, a in requests.since(start))}")
            time.sleep(0.5)
    finally:
        requests.stop()
    during = requests.since(start)
    first = next(i for i, (_, a) in enumerate(during) if where(a) == "cluster2")
    counts = collections.Counter(where(a) for _, a in during[:first])
    arrived = during[first][0]
    with capsys.disabled():
        print(f"\nthe move: {first} requests from the undeploy to the first answer from "
              f"cluster2 ({dict(counts)}); that answer came {arrived - start:.1f} s after the "
              f"undeploy began, {arrived - deployed:+.1f} s after deploy returned")
    assert all(a["peer"] == "spiffe://cluster.local/ns/foo/sa/sleep"
               for _, a in during[first:] if where(a) == "cluster2")
    assert set(counts) <= {"cluster1", "failed"}, counts
    placements = mesh_lab_run.mesh_lab("meshbridge", "--server", "--", "discover", "-o", "json")
    assert placements.returncode == 0, placements.stderr
    assert {(p["app"], p["cluster"]) for p in json.loads(placements.stdout)} == {
        ("httpbin", "cluster2"), ("sleep", "cluster1")}
