"""Propagation: from a write to every proxy having it, and what a status query costs.

Two parts (``--only lab`` or ``--only simulate``; both by default):

- **lab** (root): a mesh lab of ``tests/lab/meshes/three-clusters.yaml`` (3 clusters, istiod
  as installed). Each of ``--rounds`` rounds changes ``api``'s port (8080 <-> 8081: objects in
  all three clusters) and measures write -> delivered (every proxy of every changed cluster
  ACKed a push made after the write):

  * through ``meshbridge apply --wait``: the seconds it records per cluster, from the end of
    its writes to the poll that saw the cluster delivered (polls every 0.25 s); a round's
    figure is its slowest cluster;
  * through ``meshbridge serve``'s reconciler (on the lab's own store, the clusters reached
    through registered credentials): from the answer to ``POST /api/v1/apply`` to
    ``GET /api/v1/status`` reporting that revision delivered (polled every 0.1 s); this
    includes the reconciler noticing the write (it looks every second), rendering, writing,
    and its watch.

  Then the cost of a status query of the 3 clusters: ``usecases.delivery.check`` in-process
  (every istiod read through a port-forward, judged, recorded), and the whole
  ``meshbridge status --propagation`` process.
- **simulate**: what a status query of 100 clusters with 2,000 proxies costs besides its
  reads: istiod's answers for 100 clusters built from the answers captured from the real istiod
  (``tests/fixtures/istiod``: its objects and proxies copied under new names to 250 objects and
  20 proxies a cluster), decoded and judged as ``status --propagation`` does.

No assertion: it prints figures. ``sudo .venv/bin/python bench/propagation.py [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

import httpx  # noqa: E402
import yaml  # noqa: E402
from istiodanswers import answer  # noqa: E402

from meshbridge.kube.istiod import ClusterReading, Replica, decode_configz, decode_syncz  # noqa: E402
from meshbridge.usecases.propagation import judge  # noqa: E402

MESH_LAB = ROOT / "scripts" / "mesh-lab"
MESH = ROOT / "tests" / "lab" / "meshes" / "three-clusters.yaml"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(MESH_LAB), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode not in (0, 1):
        sys.exit(f"mesh-lab {args[0]} failed:\n{proc.stderr[-4000:]}")
    return proc


def variants(folder: Path, docs: list[dict[str, Any]]) -> list[Path]:
    """The lab's intents with api's port 8080 and 8081."""
    out = []
    for port in (8081, 8080):
        changed = json.loads(json.dumps(docs))
        for d in changed:
            if d["kind"] == "InboundIntent" and d["metadata"]["name"] == "api":
                d["spec"]["port"] = port
        path = folder / f"intents-{port}.yaml"
        path.write_text(yaml.safe_dump_all(changed, sort_keys=False))
        out.append(path)
    return out


def apply_wait(d: str, files: list[Path], rounds: int) -> list[float]:
    figures = []
    for i in range(rounds):
        proc = lab("meshbridge", "--dir", d, "--", "apply", "--wait", "--timeout", "2m", "-f",
                   str(files[i % 2]))
        if proc.returncode != 0:
            sys.exit(f"apply --wait failed:\n{proc.stderr[-3000:]}")
        views = json.loads(lab("meshbridge", "--dir", d, "--", "status", "--propagation",
                               "-o", "json").stdout)
        figures.append(max(v["seconds"] for v in views if v["seconds"] is not None))
    return figures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def through_server(lab_dir: Path, docs: list[dict[str, Any]], rounds: int) -> list[float]:
    """Run in the lab's network namespace (the caller entered it)."""
    from meshbridge.server.tokens import create_token
    from meshbridge.store import open_store

    db = f"sqlite:///{lab_dir / 'state.db'}"
    store = open_store(db)
    editor = {"Authorization": f"Bearer {create_token(store, 'bench-editor', 'editor')}"}
    admin = {"Authorization": f"Bearer {create_token(store, 'bench-admin', 'admin')}"}
    store.close()
    port = free_port()
    log = (lab_dir / "bench-serve.log").open("ab")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("meshbridge")), "serve", "--port", str(port),
         "--reconcile-interval", "60", "--log-level", "warning"],
        env={**os.environ, "MESHBRIDGE_DB": db}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        served = json.loads(json.dumps(docs))
        for d in served:
            if d["kind"] == "Cluster":
                name = d["metadata"]["name"]
                kubeconfig = (lab_dir / "testenv" / f"{name}.kubeconfig").read_bytes()
                r = httpx.put(f"{url}/api/v1/credentials/{name}", content=kubeconfig,
                              headers={**admin, "Content-Type": "application/yaml"}, timeout=60)
                assert r.status_code in (200, 201), r.text
                d["spec"]["kubeconfig"] = {"credential": name}

        def post(port_: int) -> int:
            for d in served:
                if d["kind"] == "InboundIntent" and d["metadata"]["name"] == "api":
                    d["spec"]["port"] = port_
            r = httpx.post(f"{url}/api/v1/apply", content=yaml.safe_dump_all(served),
                           headers={**editor, "Content-Type": "application/yaml"}, timeout=120)
            assert r.status_code == 200, r.text[:2000]
            return int(r.json()["metadata"]["resourceVersion"])

        def delivered(revision: int, timeout: float = 300) -> float:
            t0 = time.monotonic()
            while time.monotonic() - t0 < timeout:
                found = httpx.get(f"{url}/api/v1/status", headers=editor, timeout=30).json()
                p = found.get("propagation") or {}
                if int(p.get("revision") or 0) >= revision and p.get("delivered"):
                    return time.monotonic() - t0
                time.sleep(0.1)
            raise SystemExit(f"revision {revision} not delivered in {timeout}s: {found}")

        delivered(post(8080))  # the server takes the clusters over: untimed
        figures = []
        for i in range(rounds):
            revision = post(8081 if i % 2 == 0 else 8080)
            figures.append(delivered(revision))
        metrics = httpx.get(f"{url}/metrics", headers=editor, timeout=30).text
        count = [line for line in metrics.splitlines()
                 if line.startswith("meshbridge_propagation_seconds_count")]
        print(f"server histogram: {', '.join(count)}", file=sys.stderr)
        return figures
    finally:
        server.terminate()
        server.wait(30)


def status_cost(d: str, rounds: int) -> tuple[float, float]:
    from meshbridge.store import open_store
    from meshbridge.usecases import apply as apply_service
    from meshbridge.usecases import delivery

    store = open_store(str(Path(d) / "state.db"))
    inproc = []
    try:
        targets = delivery.recorded_targets(apply_service.cluster_statuses(store))
        for _ in range(rounds):
            t0 = time.perf_counter()
            views = delivery.check(store, targets)
            inproc.append(time.perf_counter() - t0)
            assert [v.state for v in views] == ["delivered"] * 3, views
    finally:
        store.close()
    process = []
    exe = str(Path(sys.executable).with_name("meshbridge"))
    for _ in range(rounds):
        t0 = time.perf_counter()
        done = subprocess.run([exe, "status", "--propagation", "--state",
                               str(Path(d) / "state.db")], capture_output=True, check=False)
        process.append(time.perf_counter() - t0)
        assert done.returncode == 0, done.stderr
    return statistics.median(inproc), statistics.median(process)


def report(label: str, values: list[float]) -> None:
    print(f"  {label}: p50 {pct(values, 0.5):.2f} s, p95 {pct(values, 0.95):.2f} s "
          f"(min {min(values):.2f}, max {max(values):.2f})", flush=True)


def back_to(netns: int) -> None:
    """This process back into the network namespace ``netns`` (an open fd): `mesh-lab down`
    kills every process left inside the lab's namespaces."""
    import ctypes

    from meshbridge_dev.lab.common import CLONE_NEWNET

    if ctypes.CDLL(None, use_errno=True).setns(netns, CLONE_NEWNET) != 0:
        sys.exit(f"setns back: {os.strerror(ctypes.get_errno())}")


def run_lab(rounds: int) -> None:
    from meshbridge_dev.lab.common import enter_netns

    lab("build")
    folder = Path(tempfile.mkdtemp(prefix="mesh-lab-bench-"))
    folder.chmod(0o755)
    d = str(folder / "lab")
    t0 = time.monotonic()
    lab("up", "--dir", d, "-f", str(MESH))
    print(f"lab up: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        docs = [x for x in yaml.safe_load_all((folder / "lab" / "intents.yaml").read_text()) if x]
        files = variants(folder, docs)
        print(f"write -> delivered, 3 clusters, {rounds} rounds (api's port: objects in all "
              f"three)", flush=True)
        report("apply --wait", apply_wait(d, files, rounds))
        state = json.loads((folder / "lab" / "lab.json").read_text())
        enter_netns(f"ml{state['id']}-ctl")
        # (before the server's part: its records reach the clusters through credentials)
        inproc, process = status_cost(d, max(5, rounds))
        print(f"status of 3 clusters: in-process {inproc * 1e3:.0f} ms (median), "
              f"`meshbridge status --propagation` {process * 1e3:.0f} ms", flush=True)
        report("server's reconciler", through_server(folder / "lab", docs, rounds))
    finally:
        back_to(home)
        lab("down", "--dir", d)
        shutil.rmtree(folder, ignore_errors=True)


def scaled(clusters: int, objects: int, proxies: int) -> list[tuple[dict[str, Any], bytes, bytes]]:
    """Per cluster: an apply's record and istiod's configz and syncz, built from the captured
    answers (objects and proxies copied under new names)."""
    configz = json.loads(answer("synced", "cluster1", "configz"))
    syncz = json.loads(answer("synced", "cluster1", "syncz"))
    sidecar = next(e for e in syncz if e["proxy_type"] == "sidecar")
    out = []
    for c in range(clusters):
        config, record = [], []
        for i in range(objects):
            item = json.loads(json.dumps(configz[i % len(configz)]))
            item["metadata"]["name"] = f"svc{i}.ns{i % 40}.c{c}"
            item["metadata"]["namespace"] = f"ns{i % 40}"
            item["metadata"]["resourceVersion"] = str(1000 + i)
            config.append(item)
            record.append({"object": f"{item['kind']}/ns{i % 40}/svc{i}.ns{i % 40}.c{c}",
                           "state": "Applied", "resourceVersion": str(1000 + i)})
        entries = []
        for p in range(proxies):
            entry = json.loads(json.dumps(sidecar))
            entry["proxy"] = f"app{p}-7d9f8b6c5-x{p:04d}.ns{p % 40}"
            entries.append(entry)
        status = {"cluster": f"c{c:03d}", "state": "Applied", "objects": record, "pruned": []}
        out.append((status, json.dumps(config).encode(), json.dumps(entries).encode()))
    return out


def run_simulate(rounds: int) -> None:
    data = scaled(100, 250, 20)
    size = sum(len(c) + len(s) for _, c, s in data)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for status, configz, syncz in data:
            reading = ClusterReading(status["cluster"], "read", [
                Replica("istiod-0", decode_configz(configz), decode_syncz(syncz))])
            view = judge(status, reading)
            assert view.state == "delivered", view.reason
        times.append(time.perf_counter() - t0)
    print(f"status of 100 clusters, 25,000 objects, 2,000 proxies, from captured answers "
          f"({size / 1e6:.1f} MB of istiod answers): decode + judge {statistics.median(times) * 1e3:.0f} ms "
          f"(median of {rounds}; the reads themselves go 16 clusters at a time)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--only", choices=["lab", "simulate"])
    args = ap.parse_args()
    if args.only in (None, "simulate"):
        run_simulate(max(5, args.rounds))
    if args.only in (None, "lab"):
        if os.geteuid() != 0:
            sys.exit("the lab part needs root (network namespaces): sudo, or --only simulate")
        run_lab(args.rounds)


if __name__ == "__main__":
    main()
