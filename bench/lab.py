"""The mesh lab's own costs: how long ``mesh-lab up`` takes per scenario, and what a request
through real sidecars and gateways costs.

For every seed scenario and the lab's three-cluster mesh it runs, as a developer would:

- ``scripts/mesh-lab up`` (control planes, proxies, ``meshbridge apply``, all ACKs), timed;
- ``scripts/mesh-lab request --count N --timing`` for one path of the scenario (each request on a
  new connection, through the client's sidecar, and for cross-cluster paths the server
  cluster's gateway and the server's sidecar), and prints the median, p90 and p99 latency the
  client measured, plus the same for a request that stays in one cluster where the scenario
  has one;
- ``scripts/mesh-lab down``, timed.

Needs root (network namespaces). ``--count`` requests per path (default 200).

    sudo .venv/bin/python bench/lab.py [--count 200] [--only sleep-httpbin]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESH_LAB = ROOT / "scripts" / "mesh-lab"
EXAMPLES = ROOT / "examples"
MESHES = ROOT / "tests" / "lab" / "meshes"

# scenario -> (intent files, --service-protocol options, [(label, source, url)])
SCENARIOS: dict[str, tuple[list[Path], list[str], list[tuple[str, str, str]]]] = {
    "sleep-httpbin": (
        [EXAMPLES / "sleep-httpbin"], ["bar/httpbin:8000=HTTP"],
        [("cross-cluster", "sleep.foo@cluster1", "http://httpbin.bar.cluster2:8000/headers")],
    ),
    "helloworld-lb": (
        [EXAMPLES / "helloworld-lb"], [],
        [("50/50 split", "sleep.sample@cluster1",
          "http://helloworld.sample.svc.cluster.local:5000/hello")],
    ),
    "external-mtls": (
        [EXAMPLES / "external-mtls"], [],
        [("in-cluster", "sleep.default@cluster1",
          "http://httpbin.default.svc.cluster.local:8000/headers")],
    ),
    "egress": (
        [EXAMPLES / "egress", MESHES / "egress-clients.yaml"], [],
        [("egress HTTP", "sleep.default@cluster1", "http://nginx.example/"),
         ("egress TCP (VIP)", "sleep.default@cluster1", "tcp://mysql.db.example:3306")],
    ),
    "three-clusters": (
        [MESHES / "three-clusters.yaml"], [],
        [("cross-cluster", "web.shop@c1", "http://api.shop.c2:8080/"),
         ("30/70 split", "web.shop@c1", "http://search.shop.svc.cluster.local:9000/")],
    ),
}


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(MESH_LAB), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        sys.exit(f"mesh-lab {args[0]} failed:\n{proc.stderr[-4000:]}")
    return proc


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--only", action="append", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    lab("build")
    rows = []
    for name in args.only or SCENARIOS:
        files, protocols, paths = SCENARIOS[name]
        folder = Path(tempfile.mkdtemp(prefix="mesh-lab-bench-"))
        folder.chmod(0o755)
        d = str(folder / "lab")
        up = ["up", "--dir", d]
        for f in files:
            up += ["-f", str(f)]
        for p in protocols:
            up += ["--service-protocol", p]
        t0 = time.monotonic()
        lab(*up)
        t_up = time.monotonic() - t0
        try:
            for label, source, url in paths:
                out = lab("request", "--dir", d, "--from", source, "--count", str(args.count),
                          "--timing", url).stdout
                answers = [json.loads(line) for line in out.splitlines()]
                ms = [a["ms"] for a in answers if "error" not in a]
                failed = len(answers) - len(ms)
                rows.append((name, f"{t_up:.1f}", label, f"{statistics.median(ms):.2f}",
                             f"{percentile(ms, 0.9):.2f}", f"{percentile(ms, 0.99):.2f}",
                             str(failed)))
        finally:
            t0 = time.monotonic()
            lab("down", "--dir", d)
            t_down = time.monotonic() - t0
            shutil.rmtree(folder, ignore_errors=True)
        print(f"{name}: up {t_up:.1f} s, down {t_down:.1f} s", file=sys.stderr, flush=True)
    print(f"requests per path: {args.count}, each on a new connection, timed by the client")
    header = ("scenario", "up (s)", "path", "p50 (ms)", "p90 (ms)", "p99 (ms)", "failed")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
