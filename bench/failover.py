"""Failover as a client feels it, measured in the mesh lab: how long a switch takes and how many
requests fail on the way, then how long until traffic comes back.

It starts the lab of ``tests/lab/meshes/failover.yaml`` (three clusters; outlier detection: 2
consecutive 5xx, interval 1 s, base ejection time 5 s) and, ``--rounds`` times for each form
(locality, weighted split, explicit priority):

1. sends requests every ``--pace`` seconds (each on a new connection) through the client's
   sidecar, stops the preferred cluster's instance (``mesh-lab stop``) while they run, and counts
   the requests that failed before the first one answered by another cluster (the *switch*), and
   the seconds from the first failure to that answer;
2. starts the instance again and measures the seconds until the first request it answers.

Needs root. ``.venv/bin/python bench/failover.py [--rounds 3] [--pace 0.05]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MESH_LAB = ROOT / "scripts" / "mesh-lab"
MESH = ROOT / "tests" / "lab" / "meshes" / "failover.yaml"

# form -> (client, url, the instance to stop)
FORMS = {
    "locality (a -> b)": ("web.shop@a", "http://api.shop.svc.cluster.local:8080/",
                          "api.shop@a"),
    "weighted 30/70 (b out)": ("web.shop@c", "http://split.shop.svc.cluster.local:9090/",
                               "split.shop@b"),
    "priority (c -> b)": ("web.shop@a", "http://ordered.shop.svc.cluster.local:7070/",
                          "ordered.shop@c"),
}


def lab(*args: str) -> str:
    proc = subprocess.run([str(MESH_LAB), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        sys.exit(f"mesh-lab {args[0]} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def requests(d: str, source: str, url: str, count: int, pace: float) -> list[dict]:
    out = subprocess.run([str(MESH_LAB), "request", "--dir", d, "--from", source, "--count",
                          str(count), "--interval", str(pace), "--timing", "--timeout", "2", url],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def measure(d: str, source: str, url: str, instance: str, pace: float,
            ejection: float) -> tuple[int, float, float]:
    """(failed requests in the switch, switch seconds, seconds until back after restart)."""
    dead = instance.rsplit("@", 1)[1]
    count = round(4.0 / pace)  # 4 s: shorter than the ejection, so one switch only
    result: list[dict] = []
    runner = threading.Thread(target=lambda: result.extend(
        requests(d, source, url, count, pace)))
    runner.start()
    time.sleep(0.5)
    lab("stop", "--dir", d, instance)
    runner.join()
    failed = [a for a in result if a.get("status") != 200]
    first_fail = failed[0]["t"] if failed else None
    switched = next(a["t"] for a in result if a.get("status") == 200 and a["cluster"] != dead
                    and first_fail is not None and a["t"] > first_fail)
    in_switch = [a for a in failed if a["t"] < switched]
    lab("start", "--dir", d, instance)
    back = requests(d, source, url, round((ejection + 4) / pace), pace)
    returned = next((a["t"] for a in back if a.get("cluster") == dead), float("nan"))
    time.sleep(ejection * 3)  # every ejection over (backoff doubles it) before the next round
    return len(in_switch), switched - (first_fail or switched), returned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pace", type=float, default=0.05, help="seconds between requests")
    args = ap.parse_args()
    lab("build")
    folder = Path(tempfile.mkdtemp(prefix="mesh-lab-bench-"))
    folder.chmod(0o755)
    d = str(folder / "lab")
    lab("up", "--dir", d, "-f", str(MESH))
    rows = []
    try:
        for form, (source, url, instance) in FORMS.items():
            figures = [measure(d, source, url, instance, args.pace, ejection=5.0)
                       for _ in range(args.rounds)]
            failed = [f[0] for f in figures]
            switch = [f[1] for f in figures]
            back = [f[2] for f in figures]
            rows.append((form, f"{min(failed)}-{max(failed)}",
                         f"{statistics.median(switch):.2f}", f"{max(switch):.2f}",
                         f"{statistics.median(back):.2f}"))
            print(f"{form}: {figures}", file=sys.stderr, flush=True)
    finally:
        lab("down", "--dir", d)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"outlier detection: 2 consecutive 5xx, interval 1 s, ejection 5 s; a request every "
          f"{args.pace} s; {args.rounds} rounds per form")
    header = ("form", "failed requests", "switch p50 (s)", "switch max (s)",
              "back after restart p50 (s)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
