"""Certificate rotations run in the mesh lab under steady traffic, as a user runs them.

The lab of ``tests/lab/meshes/rotation.yaml`` has three clusters; in each, ``caller`` calls the
echo server of every cluster (its own under its Service name, the others under their remote
names), over HTTP and raw TCP, each with a new connection per request and with one held
connection (``mesh-lab traffic``). :class:`Drill` runs the steps of ``docs/pki.md`` through
``mesh-lab meshbridge`` (meshbridge in the lab's network, on its state store) and
``mesh-lab apply``, and keeps for every step its wall time and the requests that succeeded and
failed meanwhile. What a workload's sidecar presents is read from Envoy (``mesh-lab certs``).

``tests/lab/test_lab_rotation.py`` asserts on it; ``bench/rotation.py`` prints it.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labrun import MESHES, LabRun, mesh_lab

MESH = MESHES / "rotation.yaml"
CLUSTERS = ("c1", "c2", "c3")
INTERVAL = 0.5  # seconds between one caller's requests
# Hang detection only: a step that never ends fails the test, however slow the machine.
STEP_TIMEOUT = 900.0


def callers(cluster: str) -> dict[str, list[str]]:
    """``mesh-lab traffic start`` options for ``caller`` in ``cluster``: every echo server, over
    HTTP and TCP, on new and on held connections."""
    urls = []
    for server in CLUSTERS:
        suffix = "svc.cluster.local" if server == cluster else server
        urls += [f"http://echo-{server}.ring.{suffix}:8080/", f"tcp://echo-{server}-tcp.ring."
                 f"{suffix}:9000"]
    return {"new": urls, "held": urls}


def workloads(lab: LabRun) -> list[str]:
    """Every proxy of the lab with a workload certificate: app sidecars and gateways."""
    return sorted(key for key, rec in lab.state["pods"].items() if "proxy" in rec["procs"])


@dataclass
class Step:
    name: str
    seconds: float
    ok: int
    failed: int


@dataclass
class Drill:
    """One lab, its traffic, and the steps run so far."""

    lab: LabRun
    steps: list[Step] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    last_report: dict[str, Any] = field(default_factory=dict)  # the final one, after "stop"

    # ---------------------------------------------------------------------------- traffic

    def start_traffic(self) -> None:
        for cluster in CLUSTERS:
            urls = callers(cluster)
            args = ["--from", f"caller.ring@{cluster}", "--interval", str(INTERVAL)]
            for kind in ("new", "held"):
                for url in urls[kind]:
                    args += [f"--{kind}", url]
            proc = self._traffic("start", *args)
            assert proc.returncode == 0, proc.stderr

    def _traffic(self, verb: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``mesh-lab traffic VERB --dir DIR ARGS...`` (the verb comes before ``--dir``)."""
        return mesh_lab("traffic", verb, "--dir", str(self.lab.dir), *args)

    def traffic(self, verb: str = "report") -> dict[str, Any]:
        proc = self._traffic(verb)
        assert proc.returncode == 0, proc.stderr
        report: dict[str, Any] = json.loads(proc.stdout)
        if verb == "stop":
            self.last_report = report
        return report

    @staticmethod
    def totals(report: dict[str, Any]) -> tuple[int, int]:
        return (sum(r["ok"] for r in report.values()), sum(r["failed"] for r in report.values()))

    @staticmethod
    def failed(report: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
        """How many requests failed, and the first failures (time, caller, reason)."""
        return (sum(r["failed"] for r in report.values()),
                [f for r in report.values() for f in r["failures"]])

    @staticmethod
    def per_caller(report: dict[str, Any]) -> dict[str, int]:
        return {f"{pod} {name}": c["ok"] for pod, r in report.items()
                for name, c in r["callers"].items()}

    def step(self, name: str, action: Callable[[], None]) -> None:
        """Run ``action``; keep its time and the traffic meanwhile, and check that every caller
        got answers during it (traffic flowed the whole step, none of it stalled)."""
        before = self.traffic()
        t0 = time.monotonic()
        action()
        seconds = time.monotonic() - t0
        after = self.traffic()
        (ok0, failed0), (ok1, failed1) = self.totals(before), self.totals(after)
        self.steps.append(Step(name, seconds, ok1 - ok0, failed1 - failed0))
        counts0 = self.per_caller(before)
        stalled = [c for c, n in self.per_caller(after).items() if n <= counts0.get(c, 0)]
        assert not stalled, f"{name}: no answer during the step for {stalled}"

    # ------------------------------------------------------------------------- meshbridge

    def meshbridge(self, *args: str) -> str:
        proc = self.lab.mesh_lab("meshbridge", "--", *args)
        assert proc.returncode == 0, f"meshbridge {' '.join(args)}:\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def apply(self) -> None:
        self.lab.apply(MESH)

    def accepted(self, *args: str) -> None:
        """Run ``meshbridge ARGS`` until meshbridge accepts it; every refusal must be one that
        says what to wait for (istiod not on the phase yet, workloads not renewed yet)."""
        intents = str(self.lab.dir / "intents.yaml")
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            proc = self.lab.mesh_lab("meshbridge", "--", *args, "-f", intents)
            if proc.returncode == 0:
                return
            waiting = "wait until" in proc.stderr or "not yet this phase's" in proc.stderr
            assert waiting, f"meshbridge {' '.join(args)} refused:\n{proc.stderr}"
            self.refusals.append(proc.stderr)
            assert time.monotonic() < deadline, f"never accepted:\n{proc.stderr}"
            time.sleep(5)

    def pki(self) -> dict[str, Any]:
        proc = self.lab.meshbridge("pki", "status", "--json")
        assert proc.returncode == 0, proc.stderr
        status: dict[str, Any] = json.loads(proc.stdout)
        return status

    def fingerprints(self, role: str) -> dict[str, str]:
        """name -> SHA-256 of the store's certificates of ``role`` (root ids, or clusters)."""
        return {c["name"]: c["sha256"] for c in self.pki()["certificates"] if c["role"] == role}

    # ------------------------------------------------------------------------------ certs

    def certs(self, instance: str) -> dict[str, Any]:
        proc = self.lab.mesh_lab("certs", instance)
        assert proc.returncode == 0, proc.stderr
        answer: dict[str, Any] = json.loads(proc.stdout)
        return answer

    def all_certs(self) -> dict[str, dict[str, Any]]:
        return {w: self.certs(w) for w in workloads(self.lab)}

    def until_certs(self, what: str, ok: Callable[[str, dict[str, Any]], bool]) -> None:
        """Wait until every workload's certificate is ``ok`` (as its sidecar presents it)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            certs = self.all_certs()
            wrong = {w: c for w, c in certs.items() if not ok(w, c)}
            if not wrong:
                return
            assert time.monotonic() < deadline, f"not every workload {what}: {wrong}"
            time.sleep(3)

    def table(self) -> str:
        lines = ["| step | time | requests | failed |", "| --- | --- | --- | --- |"]
        lines += [f"| {s.name} | {s.seconds:.1f} s | {s.ok:,} | {s.failed} |" for s in self.steps]
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps([s.__dict__ for s in self.steps], indent=1) + "\n")


def cluster_of(workload: str) -> str:
    return workload.rpartition("@")[2]
