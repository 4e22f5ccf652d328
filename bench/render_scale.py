"""The CLI render of a large generated mesh: against a bare PyYAML dump, and from 100 to 1,000
clusters.

Everything here runs ``meshbridge render`` as a process (``.venv/bin/meshbridge``), as a user
or a CI job does: start-up, parse, validate, plan VIPs against the SQLite state store, load or
issue certificate material (ECDSA P-256), compile, serialise, write the tree and swap it in.

1. **Ratio** (``--ratio-clusters``, default 100 clusters / 2,000 servers): a first render fills
   the state store (root and intermediates issued); then, ``--rounds`` times, alternately: the
   CLI render again (same store, same intents: the case of issue 14) and a bare
   ``yaml.dump_all(objs, Dumper=CSafeDumper)`` in this process of the same objects (read back
   from the output; meshbridge's options, so the same bytes). Each round prints its ratio; the
   median is the figure. ``--include-secrets`` is given so the output holds every object.
   The output tree must be byte-identical in every round. An output that already is the render
   is left as it is (nothing written), so the same rounds are repeated with one intent changed
   each time (``svc0``'s port, back and forth: a few files differ, so the tree is replaced whole,
   most of it linked from the old one), the case of a commit that changes something.
2. **Scale** (``--scale``, default 100 300 1000 clusters, 20 servers per cluster): a cold render
   (fresh state store) at each size, its wall time and the peak RSS of the render process
   (``wait4``), and time per cluster, to see whether growth is linear.

    .venv/bin/python bench/render_scale.py [--ratio-clusters 100] [--rounds 5]
                                           [--scale 100 300 1000] [--skip-ratio] [--skip-scale]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.meshgen import generate  # noqa: E402

MESHBRIDGE = str(ROOT / ".venv" / "bin" / "meshbridge")
OPTIONS: dict[str, Any] = {
    "sort_keys": False,
    "default_flow_style": False,
    "width": 4096,
    "allow_unicode": True,
}
GIB = 1024**3


def cli_render(intents: Path, out: Path, state: Path, *extra: str) -> tuple[float, int]:
    """Wall time and peak RSS (bytes) of one ``meshbridge render`` process."""
    env = {**os.environ, "MESHBRIDGE_STATE": str(state)}
    argv = [MESHBRIDGE, "render", "-f", str(intents), "-o", str(out), *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{stdout.decode()}\n{stderr.decode()}")
    return elapsed, usage.ru_maxrss * 1024


def write_intents(path: Path, clusters: int, servers: int, port_shift: int = 0) -> int:
    docs = generate(clusters=clusters, servers=servers, clients=2)
    if port_shift:
        svc0 = next(d for d in docs if d["kind"] == "InboundIntent" and d["metadata"]["name"] == "svc0")
        svc0["spec"]["port"] += port_shift
    path.write_text(yaml.dump_all(docs, Dumper=yaml.CSafeDumper))
    return len(docs)


def tree(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.yaml") if p.is_file())


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in tree(root):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def ratio(clusters: int, servers: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        intents, out, state = tmp / "mesh.yaml", tmp / "out", tmp / "state.db"
        docs = write_intents(intents, clusters, servers)
        first, _ = cli_render(intents, out, state, "--include-secrets")
        objs = [yaml.load(p.read_bytes(), Loader=yaml.CSafeLoader) for p in tree(out)]
        expected = digest(out)
        print(f"== CLI render, second run on the same store: {clusters} clusters, {servers} "
              f"servers, {docs} intent documents, {len(objs)} objects")
        print(f"first render (store filled, root and {clusters} intermediates issued): "
              f"{first:.2f} s")
        ratios, renders, dumps = [], [], []
        for i in range(rounds):
            render_s, rss = cli_render(intents, out, state, "--include-secrets")
            if digest(out) != expected:
                raise SystemExit("the same render gave different bytes")
            t0 = time.perf_counter()
            yaml.dump_all(objs, Dumper=yaml.CSafeDumper, encoding="utf-8", **OPTIONS)
            dump_s = time.perf_counter() - t0
            ratios.append(render_s / dump_s)
            renders.append(render_s)
            dumps.append(dump_s)
            print(f"round {i + 1}: CLI render {render_s:.2f} s (max RSS {rss / 2**20:.0f} MiB), "
                  f"bare dump_all {dump_s:.2f} s, ratio {render_s / dump_s:.2f}")
        print(f"median: CLI render {statistics.median(renders):.2f} s, bare dump_all "
              f"{statistics.median(dumps):.2f} s, ratio {statistics.median(ratios):.2f} "
              f"(target <= 1.5, goal <= 1.0); output identical in every round")

        changed = tmp / "mesh-changed.yaml"
        write_intents(changed, clusters, servers, port_shift=100)
        print("== the same, with one intent changed before each render (svc0's port, back and "
              "forth): the tree is replaced")
        ratios, renders = [], []
        for i in range(rounds):
            render_s, _ = cli_render(changed if i % 2 == 0 else intents, out, state,
                                     "--include-secrets")
            t0 = time.perf_counter()
            yaml.dump_all(objs, Dumper=yaml.CSafeDumper, encoding="utf-8", **OPTIONS)
            dump_s = time.perf_counter() - t0
            ratios.append(render_s / dump_s)
            renders.append(render_s)
            print(f"round {i + 1}: CLI render {render_s:.2f} s, bare dump_all {dump_s:.2f} s, "
                  f"ratio {render_s / dump_s:.2f}")
        print(f"median: CLI render {statistics.median(renders):.2f} s, ratio "
              f"{statistics.median(ratios):.2f} (one intent changed)")


def scale(sizes: list[int], per_cluster: int) -> None:
    print(f"== cold CLI render (fresh state store), {per_cluster} servers per cluster")
    rows = []
    for clusters in sizes:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            intents = tmp / "mesh.yaml"
            docs = write_intents(intents, clusters, clusters * per_cluster)
            seconds, rss = cli_render(intents, tmp / "out", tmp / "state.db")
            objects = len(tree(tmp / "out"))
        rows.append((clusters, seconds))
        print(f"{clusters} clusters ({docs} documents, {objects} files written): {seconds:.1f} s, "
              f"peak RSS {rss / GIB:.2f} GiB, {1000 * seconds / clusters:.0f} ms per cluster")
    if len(rows) > 1:
        (c0, s0), (c1, s1) = rows[0], rows[-1]
        print(f"time per cluster at {c1} / at {c0}: {(s1 / c1) / (s0 / c0):.2f} (1.00: linear)")
    print("targets at 1,000 clusters: <= 60 s, < 2 GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratio-clusters", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--servers-per-cluster", type=int, default=20)
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args()
    if not args.skip_ratio:
        ratio(args.ratio_clusters, args.ratio_clusters * args.servers_per_cluster, args.rounds)
        sys.stdout.flush()
    if not args.skip_scale:
        scale(args.scale, args.servers_per_cluster)


if __name__ == "__main__":
    main()
