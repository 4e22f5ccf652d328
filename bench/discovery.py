"""Discovered placement: how long reading it takes, and how long a move takes to be routed.

**Reading** (``--api-servers N --services S``, default 10 x 200): starts N real API servers
(``scripts/k8s-testenv up``, no istiod), gives each S Services with a ready EndpointSlice and
10 labelled Deployments in one namespace, and intents with S discovered server Apps and 10
discovered client-only Apps over the N clusters. Then, best and median of ``--rounds``:

- ``meshbridge discover -f DIR -o json --parallel N`` as a process (start-up, reading and
  checking the intents, one list per kind per cluster, the decision), its answer checked
  (every App found in every cluster);
- the same read in-process (``usecases.placement.read``: the lists and what they say);
- the server's watches starting (``kube.watching.ClusterWatch`` of every cluster at once, until
  each has listed every kind and handed over its first reading).

**A move, routed** (``--lab``, root): ``examples/discovered`` in the mesh lab with ``mesh-lab
serve`` reconciling it; sleep in cluster1 sends a request every 0.1 s (new connection each)
while httpbin is moved ``--moves`` times between cluster1 and cluster2 (``undeploy`` one,
``deploy`` the other). Per move: from the moment the lab published the new instance's
endpoints (``deploy`` logs it; it publishes once the pod's proxy is ready, as a kubelet would)
to the first answer from the new cluster: p50 and p95; and the requests that failed in the
move. That covers the watch seeing the EndpointSlice, the decision, the render, the apply to
both clusters, istiod's push and Envoy's update.

    .venv/bin/python bench/discovery.py [--api-servers 10] [--services 200] [--rounds 5]
    sudo .venv/bin/python bench/discovery.py --lab [--moves 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.lab import lab, percentile  # noqa: E402

MESH_LAB = ROOT / "scripts" / "mesh-lab"
TESTENV = ROOT / "scripts" / "k8s-testenv"
MESHBRIDGE = Path(sys.executable).with_name("meshbridge")
API = "meshbridge.dev/v1alpha1"
NS, CLIENTS = "bench", 10


# ------------------------------------------------------------------------------------ reading


def populate(kubeconfig: Path, services: int) -> None:
    """S Services with a ready endpoint each, and the client-only Apps' Deployments."""
    from lightkube import Client, KubeConfig
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import Namespace, Service
    from lightkube.resources.discovery_v1 import EndpointSlice

    client = Client(config=KubeConfig.from_file(str(kubeconfig)), field_manager="bench")
    client.apply(Namespace.from_dict({"apiVersion": "v1", "kind": "Namespace",
                                      "metadata": {"name": NS}}))
    for i in range(services):
        name = f"svc{i}"
        client.apply(Service.from_dict({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"ports": [{"name": "http", "port": 8000}], "selector": {"app": name}}}))
        client.apply(EndpointSlice.from_dict({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-1", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8000}],
            "endpoints": [{"addresses": [f"10.1.{i // 250}.{i % 250 + 1}"],
                           "conditions": {"ready": True}}]}))
    for i in range(CLIENTS):
        name = f"client{i}"
        client.apply(Deployment.from_dict({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}))


def intents(kubeconfigs: dict[str, Path], services: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [{"apiVersion": API, "kind": "Mesh",
                                   "metadata": {"name": "bench"}}]
    for n, (name, path) in enumerate(sorted(kubeconfigs.items())):
        docs.append({"apiVersion": API, "kind": "Cluster", "metadata": {"name": name},
                     "spec": {"gateway": {"address": f"192.0.2.{n + 1}"},
                              "kubeconfig": {"path": str(path)}}})
    for i in range(services):
        docs.append({"apiVersion": API, "kind": "App",
                     "metadata": {"name": f"svc{i}", "namespace": NS}, "spec": {"discover": {}}})
        docs.append({"apiVersion": API, "kind": "InboundIntent",
                     "metadata": {"name": f"svc{i}", "namespace": NS},
                     "spec": {"app": f"svc{i}", "port": 8000, "protocol": "HTTP"}})
    for i in range(CLIENTS):
        docs.append({"apiVersion": API, "kind": "App",
                     "metadata": {"name": f"client{i}", "namespace": NS}, "spec": {"discover": {}}})
    return docs


def watches_started(snap: Any, access: dict[str, Any]) -> float:
    """Seconds until every cluster's watch has handed over its first reading."""
    from meshbridge.kube.watching import ClusterWatch
    from meshbridge.usecases.placement import looks

    async def run() -> float:
        started = time.perf_counter()
        pending = set(access)
        done = asyncio.Event()

        def reading(r: Any) -> None:
            pending.discard(r.cluster)
            if not pending:
                done.set()
        tasks = [asyncio.create_task(ClusterWatch(t, lk, reading).run())
                 for t, lk in looks(snap, access).values()]
        await asyncio.wait_for(done.wait(), 300)
        took = time.perf_counter() - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return took
    return asyncio.run(run())


def bench_reading(api_servers: int, services: int, rounds: int) -> None:
    from meshbridge import compile as mbcompile
    from meshbridge.kube import ReconcileOptions
    from meshbridge.loading import Source, load
    from meshbridge.usecases import placement
    from meshbridge.usecases.apply import file_target

    folder = Path(tempfile.mkdtemp(prefix="bench-discovery-"))
    names = [f"d{i}" for i in range(api_servers)]
    print(f"starting {api_servers} API servers", file=sys.stderr, flush=True)
    up = subprocess.run([sys.executable, str(TESTENV), "up", "--dir", str(folder / "tenv"),
                         *names], capture_output=True, text=True, check=False)
    if up.returncode != 0:
        sys.exit(f"k8s-testenv up failed:\n{up.stderr[-3000:]}")
    try:
        kubeconfigs = {n: folder / "tenv" / f"{n}.kubeconfig" for n in names}
        threads = [threading.Thread(target=populate, args=(k, services))
                   for k in kubeconfigs.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        docs = intents(kubeconfigs, services)
        src = folder / "intents.yaml"
        src.write_text(yaml.safe_dump_all(docs))
        snap = mbcompile.check(load([Source(str(src), src.read_text())]), before_apply=True)
        access = {d.obj.name: file_target(d.obj) for d in snap.intents.clusters}
        options = ReconcileOptions(dry_run=True, parallel=api_servers)
        want = api_servers * (services + CLIENTS)
        cli, inproc, watch = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            proc = subprocess.run([str(MESHBRIDGE), "discover", "-f", str(src), "-o", "json",
                                   "--parallel", str(api_servers), "--state",
                                   str(folder / "state.db")],
                                  capture_output=True, text=True, check=False)
            cli.append(time.perf_counter() - t0)
            found = json.loads(proc.stdout)
            assert proc.returncode == 0 and len(found) == want, (len(found), proc.stderr[-500:])
            t0 = time.perf_counter()
            readings = placement.read(snap, access, options)
            inproc.append(time.perf_counter() - t0)
            assert sum(len(r.found or {}) for r in readings) == want
            watch.append(watches_started(snap, access))
        print(f"{api_servers} API servers x {services} Services (ready EndpointSlices) + "
              f"{CLIENTS} labelled Deployments; {services + CLIENTS} discovered Apps; "
              f"{rounds} rounds")
        print("| what | best (s) | median (s) |")
        print("|---|---|---|")
        for label, values in (("meshbridge discover (process)", cli),
                              ("read, in-process", inproc),
                              ("watches started (every first reading)", watch)):
            print(f"| {label} | {min(values):.2f} | {statistics.median(values):.2f} |")
    finally:
        subprocess.run([sys.executable, str(TESTENV), "down", "--purge", "--dir",
                        str(folder / "tenv")], capture_output=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------- the move


def bench_moves(moves: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="mesh-lab-bench-"))
    folder.chmod(0o755)
    d = str(folder / "lab")
    url = "http://httpbin.bar.svc.cluster.local:8000/headers"
    lab("up", "--dir", d, "-f", str(ROOT / "examples" / "discovered"),
        "--deploy", "sleep.foo@cluster1", "--deploy", "httpbin.bar@cluster1")
    client = None
    try:
        lab("serve", "--dir", d)
        client = subprocess.Popen(
            [str(MESH_LAB), "request", "--dir", d, "--from", "sleep.foo@cluster1", "--count",
             "1000000", "--interval", "0.1", "--timeout", "2", "--timing", url],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        answers: list[dict[str, Any]] = []

        def read() -> None:
            assert client is not None and client.stdout is not None
            for line in client.stdout:
                if line.strip():
                    answers.append(json.loads(line))
        threading.Thread(target=read, daemon=True).start()
        delays, failed = [], []
        here = "cluster1"
        for n in range(moves):
            there = "cluster2" if here == "cluster1" else "cluster1"
            first = len(answers)
            lab("undeploy", "--dir", d, f"httpbin.bar@{here}")
            deployed = lab("deploy", "--dir", d, f"httpbin.bar@{there}").stderr
            published = float(re.findall(r"endpoints published at ([0-9.]+)", deployed)[-1])
            deadline = time.monotonic() + 300
            while True:
                tail = answers[first:]
                routed = [a for a in tail if a.get("cluster") == there and a.get("status") == 200]
                if len(routed) >= 10:
                    break
                if time.monotonic() > deadline:
                    sys.exit(f"move {n + 1}: not routed to {there} within 300 s")
                time.sleep(0.5)
            delays.append(routed[0]["at"] + routed[0]["ms"] / 1000 - published)
            failed.append(sum(1 for a in tail[:tail.index(routed[0])] if a.get("status") != 200))
            print(f"move {n + 1} to {there}: routed {delays[-1]:.2f} s after the endpoints were "
                  f"published; {failed[-1]} requests failed in the move", file=sys.stderr,
                  flush=True)
            here = there
        print(f"{moves} moves of httpbin between cluster1 and cluster2, sleep (cluster1) "
              "requesting every 0.1 s")
        print("| endpoints published -> first answer from the new cluster | p50 (s) | p95 (s) |")
        print("|---|---|---|")
        print(f"| routed | {percentile(delays, 0.5):.2f} | {percentile(delays, 0.95):.2f} |")
        print(f"failed requests per move (the instance gone, then routed): median "
              f"{statistics.median(failed):.0f}, max {max(failed)}")
    finally:
        if client is not None:
            client.terminate()
        lab("down", "--dir", d)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api-servers", type=int, default=10)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--lab", action="store_true", help="the move in the mesh lab (root)")
    ap.add_argument("--moves", type=int, default=10)
    args = ap.parse_args()
    if args.lab:
        bench_moves(args.moves)
    else:
        bench_reading(args.api_servers, args.services, args.rounds)


if __name__ == "__main__":
    main()
