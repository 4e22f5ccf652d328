"""Apply a generated mesh to real API servers behind network latency; compare with kubectl.

For each latency asked (``--latency-ms 10 0``: 10 ms, then none), starts 2 x N fresh clusters with
scripts/k8s-testenv (N for meshbridge, N for kubectl, so both write into empty clusters) and puts
each API server behind its own Toxiproxy proxy. With a latency, every proxy gets two ``latency``
toxics, one per direction (``upstream``: client -> API server, ``downstream``: back), so a
request and its answer wait ``2 x latency`` (plus ``--jitter-ms``) on the network as they do
between a laptop or CI runner and a real cluster. Both tools reach the API servers only through
the proxies (their kubeconfigs point at them; the servers' certificates name IP 127.0.0.1, so
another port is fine). Then it times, in the same run:

- ``meshbridge apply`` into the empty clusters (the CLI process: start-up, render from the state
  store, namespaces, server-side apply of every object, status recorded);
- ``meshbridge apply`` again with nothing changed (reads, compares, writes nothing), best of
  ``--repeat``;
- ``kubectl apply --server-side -R -f <cluster dir>`` of the same objects, which ``meshbridge
  render --include-secrets`` wrote (so the cacerts Secrets are sent by both), with the
  namespaces added to its input; one kubectl per cluster, all clusters at once. kubectl's
  discovery cache (``--cache-dir``) is filled through the same proxies before it is timed, as on a
  machine that has used those clusters before; for reference, kubectl applying the same files
  again is timed too (best of ``--repeat``).

and prints the ratios. kubectl is built from the pinned k8s.io/kubernetes module and Toxiproxy
from devtools/pins/toxiproxy/go.mod (``scripts/k8s-testenv build --kubectl --toxiproxy``, done
here). IstioOperator files are left out of kubectl's input: the test API servers do not serve
that kind (meshbridge reports it as skipped). Every process started here is stopped on the way
out, whatever happens.

Rounds (``--rounds``) repeat every scenario on fresh clusters, kubectl going first in every
second one, and a summary gives each round's ratios and their median.

    .venv/bin/python bench/apply.py [--clusters 5 --objects 400 --latency-ms 10 0 --repeat 3
                                     --rounds 2]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.meshgen import generate  # noqa: E402

TESTENV = ROOT / "scripts" / "k8s-testenv"
KUBECTL_KINDS = "secrets,serviceentries,destinationrules,gateways,virtualservices,authorizationpolicies,namespaces"


def sh(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, text=True, capture_output=True, **kw)


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one command; exits with its output on failure."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Toxiproxy:
    """A Toxiproxy server on 127.0.0.1, driven through its HTTP API."""

    def __init__(self, binary: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen([str(binary), "-host", "127.0.0.1", "-port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait(log)
        except BaseException:
            self.stop()
            raise

    def _wait(self, log: Path) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self._call("GET", "/version")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"toxiproxy did not start; see {log}") from None
                time.sleep(0.1)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer: bytes = resp.read()
            return answer

    def proxy(self, name: str, upstream: str) -> str:
        """A proxy to ``upstream`` on a free port; its listen address."""
        listen = f"127.0.0.1:{free_port()}"
        made = json.loads(self._call(
            "POST", "/proxies",
            {"name": name, "listen": listen, "upstream": upstream, "enabled": True}))
        return str(made["listen"])

    def latency(self, name: str, latency_ms: int, jitter_ms: int) -> None:
        """Delay every chunk of data by ``latency_ms`` (+- ``jitter_ms``) in each direction."""
        for stream in ("upstream", "downstream"):
            self._call("POST", f"/proxies/{name}/toxics", {
                "name": f"latency_{stream}", "type": "latency", "stream": stream, "toxicity": 1.0,
                "attributes": {"latency": latency_ms, "jitter": jitter_ms},
            })

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@contextmanager
def clusters(env_dir: Path, names: list[str]) -> Iterator[None]:
    """Fresh API servers (and etcds) named ``names``; all stopped when the block ends."""
    print(f"starting {len(names)} API servers ...", file=sys.stderr)
    try:
        sh(sys.executable, str(TESTENV), "up", "--dir", str(env_dir), *names)
        yield
    finally:
        subprocess.run([sys.executable, str(TESTENV), "down", "--dir", str(env_dir)],
                       capture_output=True, check=False)


def proxied_kubeconfig(original: Path, listen: str, target: Path) -> Path:
    """A copy of ``original`` whose server is the proxy at ``listen``."""
    config = yaml.safe_load(original.read_text())
    for entry in config["clusters"]:
        entry["cluster"]["server"] = f"https://{listen}"
    target.write_text(yaml.safe_dump(config))
    return target


@dataclass
class Figures:
    latency_ms: int
    objects: int
    first: float
    first_cpu: float
    noop: float
    kubectl: float
    kubectl_cpu: float
    kubectl_again: float
    kubectl_first: bool


def scenario(args: argparse.Namespace, tools: dict[str, Path], latency_ms: int,
             tmp: Path, kubectl_first: bool) -> Figures:
    env_dir = tmp / "env"
    n = args.clusters
    names = [f"mb{i}" for i in range(n)] + [f"kc{i}" for i in range(n)]
    servers = max(1, args.objects * n // 7)
    with clusters(env_dir, names):
        toxi = Toxiproxy(tools["toxiproxy"], tmp / "toxiproxy.log")
        try:
            configs: dict[str, Path] = {}
            for name in names:
                original = env_dir / f"{name}.kubeconfig"
                server = yaml.safe_load(original.read_text())["clusters"][0]["cluster"]["server"]
                listen = toxi.proxy(name, server.removeprefix("https://"))
                if latency_ms or args.jitter_ms:
                    toxi.latency(name, latency_ms, args.jitter_ms)
                configs[name] = proxied_kubeconfig(original, listen, tmp / f"{name}.proxied")
            return measure(args, tools, latency_ms, tmp, configs, servers, kubectl_first)
        finally:
            toxi.stop()


def measure(args: argparse.Namespace, tools: dict[str, Path], latency_ms: int, tmp: Path,
            configs: dict[str, Path], servers: int, kubectl_first: bool) -> Figures:
    n = args.clusters
    kubectl = str(tools["kubectl"])
    meshbridge = str(ROOT / ".venv" / "bin" / "meshbridge")
    docs = generate(clusters=n, servers=servers, clients=2)
    for d in docs:
        if d["kind"] == "Cluster":
            i = int(d["metadata"]["name"][1:])
            d["spec"]["kubeconfig"] = {"path": str(configs[f"mb{i}"])}
    intents = tmp / "mesh.yaml"
    intents.write_text(yaml.safe_dump_all(docs))
    env = {**os.environ, "MESHBRIDGE_STATE": str(tmp / "state.db")}
    out = tmp / "out"
    # with the Secrets (cacerts), which meshbridge apply sends too: the same objects
    timed([meshbridge, "render", "-f", str(intents), "-o", str(out), "--include-secrets"], env)
    for path in out.rglob("istiooperator.*.yaml"):
        path.unlink()
    counts = [sum(1 for _ in c.rglob("*.yaml")) for c in sorted(out.iterdir()) if c.is_dir()]
    for i in range(n):  # kubectl needs the namespaces in its input
        folder = out / f"c{i:03d}"
        spaces = sorted(p.name for p in folder.iterdir() if p.is_dir())
        (folder / "00-namespaces.yaml").write_text(yaml.safe_dump_all(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": s}} for s in spaces]))
    print(f"latency {latency_ms} ms each way: {n} + {n} clusters, {sum(counts)} objects per tool "
          f"({min(counts)}-{max(counts)} per cluster)", file=sys.stderr)

    # A cluster that has run for a while has its API caches filled; fresh ones answer the first
    # list of each kind with 429 for a second or so. Warm every cluster the same way (untimed),
    # through its proxy, which also fills kubectl's discovery cache for that address.
    cache = tmp / "kubectl-cache"

    def warm(name: str) -> None:
        for _ in range(30):
            done = subprocess.run([kubectl, "--kubeconfig", str(configs[name]), "--cache-dir",
                                   str(cache), "get", KUBECTL_KINDS, "-A"],
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return
            time.sleep(0.5)
        raise SystemExit(f"cluster {name} did not warm up: {done.stderr}")

    with concurrent.futures.ThreadPoolExecutor(len(configs)) as pool:
        list(pool.map(warm, configs))

    apply = [meshbridge, "apply", "-f", str(intents), "--parallel", str(n)]

    def kubectl_all() -> tuple[float, float]:
        def one(i: int) -> tuple[float, float]:
            return timed([kubectl, "--kubeconfig", str(configs[f"kc{i}"]), "--cache-dir",
                          str(cache), "apply", "--server-side", "--field-manager", "bench", "-R",
                          "-f", str(out / f"c{i:03d}")])
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            cpu = sum(c for _, c in pool.map(one, range(n)))
        return time.perf_counter() - t0, cpu

    # Whichever goes first meets the machine in its state then (other work on it, caches):
    # the rounds alternate the order, and the ratios are taken within a round.
    if kubectl_first:
        kubectl_s, kubectl_cpu = kubectl_all()
    first, first_cpu = timed(apply, env)
    if not kubectl_first:
        kubectl_s, kubectl_cpu = kubectl_all()
    noop, again = float("inf"), float("inf")
    for _ in range(args.repeat):  # no-ops alternate too
        noop = min(noop, timed(apply, env)[0])
        again = min(again, kubectl_all()[0])
    return Figures(latency_ms, sum(counts), first, first_cpu, noop, kubectl_s, kubectl_cpu, again,
                   kubectl_first)


def report(f: Figures, args: argparse.Namespace) -> None:
    lat = f"{f.latency_ms} ms each way" + (f" (+-{args.jitter_ms} ms)" if args.jitter_ms else "")
    if not f.latency_ms and not args.jitter_ms:
        lat = "none (proxies without toxics)"
    order = "kubectl first" if f.kubectl_first else "meshbridge first"
    print(f"== latency: {lat}; {args.clusters} clusters per tool, {f.objects} objects; {order}")
    print(f"meshbridge first apply: {f.first:.2f} s (CPU {f.first_cpu:.2f} s)")
    print(f"meshbridge no-op re-apply: {f.noop:.2f} s (best of {args.repeat})")
    print(f"kubectl apply --server-side, same objects: {f.kubectl:.2f} s (CPU {f.kubectl_cpu:.2f} s)")
    print(f"kubectl apply again, nothing changed: {f.kubectl_again:.2f} s (best of {args.repeat})")
    print(f"ratio first apply / kubectl: {f.first / f.kubectl:.2f} (target <= 1.0)")
    print(f"ratio no-op re-apply / first apply: {f.noop / f.first:.3f} (target <= 0.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5, help="per tool")
    parser.add_argument("--objects", type=int, default=400, help="about this many per cluster")
    parser.add_argument("--latency-ms", type=int, nargs="+", default=[10, 0],
                        help="one scenario per value, each on fresh clusters (0: no toxic)")
    parser.add_argument("--jitter-ms", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="no-op re-applies; the best is shown")
    parser.add_argument("--rounds", type=int, default=1,
                        help="scenarios per latency, on fresh clusters; the order alternates")
    args = parser.parse_args()
    built = sh(sys.executable, str(TESTENV), "build", "--kubectl", "--toxiproxy").stdout
    tools = {k: Path(v) for k, _, v in (line.partition("=") for line in built.splitlines()) if v}
    results: list[Figures] = []
    for round_ in range(args.rounds):
        for latency_ms in args.latency_ms:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(scenario(args, tools, latency_ms, Path(tmp), round_ % 2 == 1))
                report(results[-1], args)
                sys.stdout.flush()
    for latency_ms in args.latency_ms:
        mine = [f for f in results if f.latency_ms == latency_ms]
        firsts = [f.first / f.kubectl for f in mine]
        noops = [f.noop / f.first for f in mine]
        print(f"== summary, latency {latency_ms} ms, {len(mine)} rounds: first apply / kubectl "
              f"{', '.join(f'{r:.2f}' for r in firsts)} (median {statistics.median(firsts):.2f}); "
              f"no-op / first {', '.join(f'{r:.3f}' for r in noops)} "
              f"(median {statistics.median(noops):.3f})")


if __name__ == "__main__":
    main()
