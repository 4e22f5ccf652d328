"""Benchmark of `meshbridge serve` with a large mesh stored: reads of one cluster's manifests,
and the time from a PUT of one intent to that cluster's updated manifests, against a full render.

A real server process (uvicorn) on 127.0.0.1 and a fresh database: SQLite by default, or
``--db postgresql://...``. The mesh is ``bench/meshgen.generate`` (2,000 servers: 2,000
InboundIntents, 6,000 Apps, 100 Clusters). Requests are bounded in count and time.

    .venv/bin/python bench/server.py [--servers 2000 --clusters 100 --requests 400 --threads 4]
    .venv/bin/python bench/server.py --postgres      # the same on a throwaway PostgreSQL
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

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from pgcluster import free_port  # noqa: E402

from bench.meshgen import generate  # noqa: E402
from meshbridge.compile.output import DumpMemo  # noqa: E402
from meshbridge.loading import Source  # noqa: E402
from meshbridge.service import render as render_service  # noqa: E402
from meshbridge.service.tokens import create_token  # noqa: E402
from meshbridge.store import open_store  # noqa: E402

EXTRA_SERVE_ARGS: list[str] = []


def _start(db: str, log: Path, pki: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshbridge.cli.server", "serve", "--port", str(port),
         "--log-level", "warning", "--pki" if pki else "--no-pki", *EXTRA_SERVE_ARGS],
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


def _reads(url: str, headers: dict[str, str], path: str, requests: int, threads: int) -> None:
    latencies: list[float] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
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
    pool = [threading.Thread(target=worker, args=(per,)) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    print(f"GET manifests, {threads} client threads: {len(latencies) / wall:.0f} req/s, "
          f"p50 {_pct(latencies, 0.5) * 1e3:.1f} ms, p99 {_pct(latencies, 0.99) * 1e3:.1f} ms "
          f"({len(latencies)} requests)")


def _put_to_manifests(
    url: str, headers: dict[str, str], docs: list[dict], rounds: int, change: str
) -> list[float]:
    """PUT one InboundIntent, then GET the manifests of a cluster the change shows in: the
    time a GitOps reader waits for a change. ``port``: the service port changes (VIP needs stay
    the same); ``client``: a client app of another cluster is added (a new VIP is allocated)."""
    intents = [d for d in docs if d["kind"] == "InboundIntent"]
    apps = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for d in docs if d["kind"] == "App"}
    out: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        for i in range(rounds):
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
            http.get(f"/api/v1/clusters/{cluster}/manifests")  # warm: the cached state
            current = http.get(f"/api/v1/namespaces/{ns}/inboundintents/{name}").json()
            t0 = time.perf_counter()
            r = http.put(f"/api/v1/namespaces/{ns}/inboundintents/{name}",
                         json={**current, "spec": spec})
            assert r.status_code == 200, r.text
            body = http.get(f"/api/v1/clusters/{cluster}/manifests").json()
            out.append(time.perf_counter() - t0)
            svc = intent["spec"].get("serviceName", intent["spec"]["app"])
            if change == "port":
                assert any(p.get("number") == 9000 + i for o in body
                           for p in (o.get("spec", {}).get("ports") or [])), "change not visible"
            else:
                assert any(o["metadata"]["name"].startswith(f"{svc}.{ns}.") for o in body
                           if o["metadata"].get("namespace") == ns), "change not visible"
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
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--pki", action="store_true",
                        help="serve certificate material too (ECDSA-P256 keys, issued on the "
                        "first read; every read then carries cacerts and is not cached)")
    parser.add_argument("--postgres", action="store_true",
                        help="start a throwaway PostgreSQL cluster (Debian's postgresql) and use it")
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10, help="PUT -> manifests measurements")
    parser.add_argument("--reconcile-interval", type=float, default=60.0,
                        help="the server's background reconciler (0: off); the generated "
                        "clusters have no kubeconfig, so it only plans")
    args = parser.parse_args()
    EXTRA_SERVE_ARGS[:] = ["--reconcile-interval", str(args.reconcile_interval)]

    if args.postgres:
        import pgcluster

        with pgcluster.running() as cluster:
            args.db = cluster.url(cluster.create_database())
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    docs = generate(clusters=args.clusters, servers=args.servers)
    if args.pki:
        docs[0]["spec"]["rootCA"] = {"keyAlgorithm": "ECDSA-P256"}
        if "MESHBRIDGE_STATE_KEY" not in os.environ:  # a PostgreSQL store has no key file
            import base64
            import secrets

            os.environ["MESHBRIDGE_STATE_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    print(f"mesh: {len(docs)} documents ({args.servers} InboundIntents, {args.clusters} clusters)")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        db = args.db or f"sqlite:///{tmp / 'server.db'}"
        store = open_store(db)
        token = create_token(store, "bench", "editor")
        store.close()
        headers = {"Authorization": f"Bearer {token}"}
        proc, url = _start(db, tmp / "server.log", args.pki)
        try:
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/api/v1/apply", content=yaml.dump_all(docs, Dumper=yaml.CSafeDumper),
                           headers={**headers, "Content-Type": "application/yaml"}, timeout=600)
            assert r.status_code == 200, r.text[:2000]
            print(f"apply of every document (one transaction): {time.perf_counter() - t0:.2f} s")
            path = "/api/v1/clusters/c000/manifests"
            t0 = time.perf_counter()
            first = httpx.get(f"{url}{path}", headers=headers, timeout=120)
            print(f"first GET manifests of one cluster ({len(first.json())} objects): "
                  f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
            _reads(url, headers, path, args.requests, 1)
            _reads(url, headers, path, args.requests, args.threads)
            changes = {kind: _put_to_manifests(url, headers, docs, args.rounds, kind)
                       for kind in ("port", "client")}
            rss = _rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(15)
        cold, warm = _full_render(docs, tmp)
    print(f"full render in-process (parse, validate, plan, compile, serialise): cold {cold:.2f} s, "
          f"warm {warm:.2f} s")
    for kind, times in changes.items():
        median = statistics.median(times)
        print(f"PUT one intent ({kind} change) -> updated manifests: median {median * 1e3:.0f} ms, "
              f"max {max(times) * 1e3:.0f} ms ({len(times)} changes); "
              f"{median / cold * 100:.1f} % of a cold full render (target <= 5 %), "
              f"{median / warm * 100:.1f} % of a warm one")
    print(f"server process memory (RSS): {rss:.0f} MiB")


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
