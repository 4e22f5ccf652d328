"""Benchmark of `meshbridge serve` with a large mesh stored: reads of one cluster's manifests,
and the time from a PUT of one intent to that cluster's updated manifests, against a full render;
with one replica and with three on one database.

The default mode is the one a team runs: a throwaway PostgreSQL, certificate material (``--pki``:
every read carries the cluster's cacerts), the background reconciler on, and ``--api-servers``
real API servers (scripts/k8s-testenv) whose kubeconfigs an admin registered as credentials for
the first clusters (the other generated clusters have no kubeconfig: their manifests are served,
nothing reconciles them). For each replica count in ``--replicas`` (default 1 and 3) it starts
fresh API servers and a fresh database, stores the mesh (``bench/meshgen.generate``: 2,000
servers: 2,000 InboundIntents, 6,000 Apps, 100 Clusters) with one POST, waits for the real
clusters to be reconciled, then measures. Client threads are spread over the replicas; a PUT
goes to one replica and the read that must see it to the next. Requests are bounded in count.

    .venv/bin/python bench/server.py                     # PostgreSQL, --pki, 3 real clusters, 1 and 3 replicas
    .venv/bin/python bench/server.py --sqlite --no-pki --api-servers 0 --replicas 1   # the old default
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from pgcluster import free_port  # noqa: E402

from bench.meshgen import generate  # noqa: E402
from meshbridge.loading import Source  # noqa: E402
from meshbridge.output.emitter import DumpMemo  # noqa: E402
from meshbridge.server.tokens import create_token  # noqa: E402
from meshbridge.store import open_store  # noqa: E402
from meshbridge.usecases import render as render_service  # noqa: E402

EXTRA_SERVE_ARGS: list[str] = []
TESTENV = ROOT / "scripts" / "k8s-testenv"


def _start(db: str, log: Path, pki: bool, name: str = "r1") -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshbridge.cli.server", "serve", "--port", str(port),
         "--log-level", "warning", "--pki" if pki else "--no-pki", "--replica-id", name,
         *EXTRA_SERVE_ARGS],
        env={**os.environ, "MESHBRIDGE_DB": db}, stdout=out, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _reads(
    urls: list[str], headers: dict[str, str], path: str, requests: int, threads: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(n: int, url: str) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            for _ in range(n):
                t0 = time.perf_counter()
                r = http.get(path, headers={"Accept": "application/yaml"})
                dt = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                with lock:
                    latencies.append(dt)

    per = max(1, requests // threads)
    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(per, urls[i % len(urls)]))
            for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    rate, p50, p99 = len(latencies) / wall, _pct(latencies, 0.5), _pct(latencies, 0.99)
    print(f"GET manifests, {threads} client threads over {len(urls)} replica(s): {rate:.0f} req/s, "
          f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms ({len(latencies)} requests)")
    return rate, p50, p99


def _put_to_manifests(
    urls: list[str], headers: dict[str, str], docs: list[dict], rounds: int, change: str
) -> list[float]:
    """PUT one InboundIntent, then GET the manifests of a cluster the change shows in: the
    time a GitOps reader waits for a change. ``port``: the service port changes (VIP needs stay
    the same); ``client``: a client app of another cluster is added (a new VIP is allocated).
    With several replicas the PUT goes to one and the GET to the next."""
    intents = [d for d in docs if d["kind"] == "InboundIntent"]
    apps = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "App"}
    out: list[float] = []
    clients = [httpx.Client(base_url=u, headers=headers, timeout=120) for u in urls]
    try:
        for i in range(rounds):
            http, reader = clients[i % len(clients)], clients[(i + 1) % len(clients)]
            intent = intents[i if change == "port" else len(intents) - 1 - i]
            ns, name = intent["metadata"]["namespace"], intent["metadata"]["name"]
            spec = dict(intent["spec"])
            if change == "port":
                spec["port"] = 9000 + i
                client = spec["clients"][0]["app"]
            else:  # the clients of another server in this namespace, placed elsewhere
                other = next(d for d in intents[: len(intents) // 2]
                             if d["metadata"]["namespace"] == ns and d is not intent)
                client = other["spec"]["clients"][0]["app"]
                spec["clients"] = [*spec["clients"], {"app": client}]
            cluster = apps[(ns, client)]["spec"]["clusters"][0]
            reader.get(f"/api/v1/clusters/{cluster}/manifests")  # warm: the cached state
            current = http.get(f"/api/v1/namespaces/{ns}/inboundintents/{name}").json()
            t0 = time.perf_counter()
            r = http.put(f"/api/v1/namespaces/{ns}/inboundintents/{name}",
                         json={**current, "spec": spec})
            assert r.status_code == 200, r.text
            body = reader.get(f"/api/v1/clusters/{cluster}/manifests").json()
            out.append(time.perf_counter() - t0)
            svc = intent["spec"].get("serviceName", intent["spec"]["app"])
            if change == "port":
                assert any(p.get("number") == 9000 + i for o in body
                           for p in (o.get("spec", {}).get("ports") or [])), "change not visible"
            else:
                assert any(o["metadata"]["name"].startswith(f"{svc}.{ns}.") for o in body
                           if o["metadata"].get("namespace") == ns), "change not visible"
    finally:
        for c in clients:
            c.close()
    return out


def _full_render(docs: list[dict], tmp: Path) -> tuple[float, float]:
    text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper)
    sources = [Source("mesh.yaml", text)]
    store = open_store(str(tmp / "render.db"))
    memo = DumpMemo()
    t0 = time.perf_counter()
    render_service.build(render_service.validate(sources), store, memo=memo)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_service.build(render_service.validate(sources), store, memo=memo)
    warm = time.perf_counter() - t0
    store.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="store URL (default: a throwaway PostgreSQL database)")
    parser.add_argument("--sqlite", action="store_true", help="a fresh SQLite file instead")
    parser.add_argument("--pki", action=argparse.BooleanOptionalAction, default=True,
                        help="serve certificate material too (ECDSA-P256 keys, issued on the "
                        "first read; every read then carries cacerts and is not cached)")
    parser.add_argument("--replicas", default="1,3",
                        help="replica counts to measure, comma-separated (SQLite: 1 only)")
    parser.add_argument("--api-servers", type=int, default=3,
                        help="real API servers (scripts/k8s-testenv) for the first clusters, "
                        "registered as credentials and reconciled; 0: none")
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="PUT -> manifests measurements")
    parser.add_argument("--reconcile-interval", type=float, default=60.0,
                        help="the server's background reconciler (0: off)")
    args = parser.parse_args()
    EXTRA_SERVE_ARGS[:] = ["--reconcile-interval", str(args.reconcile_interval)]
    counts = [int(n) for n in args.replicas.split(",")]
    if "MESHBRIDGE_STATE_KEY" not in os.environ:  # every replica needs the same key
        import base64
        import secrets

        os.environ["MESHBRIDGE_STATE_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    results = {}
    if args.sqlite or args.db:
        for n in counts:
            results[n] = run(args, args.db, n)
    else:
        import pgcluster

        with pgcluster.running() as cluster:
            for n in counts:
                name = cluster.create_database()
                results[n] = run(args, cluster.url(name), n)
                cluster.drop_database(name)
    if len(results) > 1:
        print("\nsummary (replicas: reads 1 thread / N threads req/s; PUT -> visible medians)")
        for n, r in results.items():
            print(f"  {n}: {r['reads1'][0]:.0f} / {r['readsN'][0]:.0f} req/s; port "
                  f"{r['port'] * 1e3:.0f} ms, client {r['client'] * 1e3:.0f} ms; "
                  f"first reconcile {r['reconciled']:.1f} s")


def _testenv(*args: str) -> None:
    subprocess.run([sys.executable, str(TESTENV), *args], check=True, capture_output=True,
                   text=True)


def _wait_reconciled(url: str, headers: dict[str, str], names: list[str], timeout: float) -> float:
    """Seconds until every named cluster's last reconcile is Applied."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        items = httpx.get(f"{url}/api/v1/status", headers=headers, timeout=30).json()["items"]
        states = {s["cluster"]: s["state"] for s in items}
        if all(states.get(n) == "Applied" for n in names):
            return time.perf_counter() - t0
        time.sleep(0.5)
    raise SystemExit(f"clusters not reconciled in {timeout:.0f} s: {states}")


def run(args: argparse.Namespace, db_url: str | None, replicas: int) -> dict[str, Any]:
    docs = generate(clusters=args.clusters, servers=args.servers)
    if args.pki:
        docs[0]["spec"]["rootCA"] = {"keyAlgorithm": "ECDSA-P256"}
    real = [f"c{i:03d}" for i in range(min(args.api_servers, args.clusters))]
    print(f"\n== {replicas} replica(s) on {'SQLite' if db_url is None else db_url.split(':')[0]}"
          f"{', --pki' if args.pki else ''}; mesh: {len(docs)} documents ({args.servers} "
          f"InboundIntents, {args.clusters} clusters, {len(real)} of them real API servers "
          f"reconciled)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        env_dir = tmp / "env"
        if real:
            _testenv("up", "--dir", str(env_dir), *real)
        db = db_url or f"sqlite:///{tmp / 'server.db'}"
        store = open_store(db)
        token = create_token(store, "bench", "editor")
        admin = {"Authorization": f"Bearer {create_token(store, 'bench-admin', 'admin')}"}
        store.close()
        headers = {"Authorization": f"Bearer {token}"}
        procs = []
        try:
            for i in range(replicas):
                procs.append(_start(db, tmp / f"server{i}.log", args.pki, f"r{i + 1}"))
            urls = [u for _, u in procs]
            for name in real:
                kubeconfig = (env_dir / f"{name}.kubeconfig").read_bytes()
                r = httpx.put(f"{urls[0]}/api/v1/credentials/{name}", content=kubeconfig,
                              headers={**admin, "Content-Type": "application/yaml"}, timeout=60)
                assert r.status_code in (200, 201), r.text
                cluster = next(d for d in docs if d["kind"] == "Cluster"
                               and d["metadata"]["name"] == name)
                cluster["spec"]["kubeconfig"] = {"credential": name}
            t0 = time.perf_counter()
            r = httpx.post(f"{urls[0]}/api/v1/apply",
                           content=yaml.dump_all(docs, Dumper=yaml.CSafeDumper),
                           headers={**headers, "Content-Type": "application/yaml"}, timeout=600)
            assert r.status_code == 200, r.text[:2000]
            print(f"apply of every document (one transaction): {time.perf_counter() - t0:.2f} s")
            reconciled = 0.0
            if real and args.reconcile_interval > 0:
                reconciled = _wait_reconciled(urls[0], headers, real, 600)
                print(f"apply -> the {len(real)} real clusters reconciled (Applied): "
                      f"{reconciled:.1f} s")
            path = "/api/v1/clusters/c000/manifests"
            t0 = time.perf_counter()
            first = httpx.get(f"{urls[-1]}{path}", headers=headers, timeout=120)
            print(f"first GET manifests of one cluster ({len(first.json())} objects): "
                  f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
            reads1 = _reads(urls, headers, path, args.requests, 1)
            readsn = _reads(urls, headers, path, args.requests, args.threads)
            changes = {kind: _put_to_manifests(urls, headers, docs, args.rounds, kind)
                       for kind in ("port", "client")}
            rss = [_rss_mib(p.pid) for p, _ in procs]
            if real:
                runs = httpx.get(f"{urls[0]}/api/v1/reconciles", params={"limit": 1000},
                                 headers=headers, timeout=30).json()["items"]
                by = sorted({(r["cluster"], r["replica"]) for r in runs})
                print(f"reconcile runs: {len(runs)}; (cluster, replica): {by}")
        finally:
            for proc, _ in procs:
                proc.terminate()
            for proc, _ in procs:
                proc.wait(30)
            if real:
                _testenv("down", "--purge", "--dir", str(env_dir))
        cold, warm = _full_render(docs, tmp)
    print(f"full render in-process (parse, validate, plan, compile, serialise): cold {cold:.2f} s, "
          f"warm {warm:.2f} s")
    medians = {}
    for kind, times in changes.items():
        median = medians[kind] = statistics.median(times)
        print(f"PUT one intent ({kind} change) -> updated manifests: median {median * 1e3:.0f} ms, "
              f"max {max(times) * 1e3:.0f} ms ({len(times)} changes); "
              f"{median / cold * 100:.1f} % of a cold full render (target <= 5 %), "
              f"{median / warm * 100:.1f} % of a warm one")
    print(f"server process memory (RSS): {', '.join(f'{m:.0f}' for m in rss)} MiB")
    return {"reads1": reads1, "readsN": readsn, "reconciled": reconciled, **medians}


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


if __name__ == "__main__":
    main()
