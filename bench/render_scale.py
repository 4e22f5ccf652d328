"""Render a large generated mesh and print what it costs.

Prints the object count, cold and warm render time, peak memory, and the ratio of the warm
render to a bare PyYAML C dump (``CSafeDumper``) of the same output objects, measured in the
same run. A render here is everything from intent YAML text to manifest bytes: parse, validate,
plan VIPs against the state store, compile, serialise. Writing files is timed separately.

Certificate material is included (the generated Mesh uses ECDSA P-256 keys: RSA-4096, the
contract's default, would make the cold figure mostly key generation). Cold: a fresh state store
(so the root and 100 intermediates are issued) and no memo. Warm: the same process renders the same intents again
(what ``meshbridge serve`` does on every read), so allocations are read back from the store and
unchanged objects are not serialised again.

    .venv/bin/python bench/render_scale.py [--clusters 100 --servers 2000 --clients 2]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.meshgen import generate
from meshbridge.compile.output import DumpMemo
from meshbridge.loading import Source
from meshbridge.service import pki as pki_service
from meshbridge.service import render as render_service
from meshbridge.service.writer import write_tree
from meshbridge.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="warm renders; the best is shown")
    args = parser.parse_args()

    docs = generate(clusters=args.clusters, servers=args.servers, clients=args.clients)
    text = yaml.dump_all(docs, Dumper=yaml.CSafeDumper)
    sources = [Source("mesh.yaml", text)]
    print(f"input: {len(docs)} documents, {len(text) / 1e6:.1f} MB of YAML")

    with tempfile.TemporaryDirectory() as tmp:
        state = str(Path(tmp) / "state.db")
        store = open_store(state)
        memo = DumpMemo()
        material = pki_service.material_provider(state)

        def render() -> render_service.Rendered:
            intents = render_service.validate(sources)
            return render_service.build(intents, store, material, memo=memo)

        gc.collect()
        t0 = time.perf_counter()
        cold = render()
        cold_s = time.perf_counter() - t0
        objects = [o for objs in cold.objects.values() for o in objs]

        warm_s = float("inf")
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            warm = render()
            warm_s = min(warm_s, time.perf_counter() - t0)
        assert warm.files == cold.files, "a warm render gave different bytes"

        t0 = time.perf_counter()
        for obj in objects:
            yaml.dump(obj, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)
        dump_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        write_tree(Path(tmp) / "out", warm.files)
        write_s = time.perf_counter() - t0
        store.close()

    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"clusters: {len(cold.objects)}")
    print(f"objects: {len(objects)}")
    print(f"cold render: {cold_s:.2f} s")
    print(f"warm render: {warm_s:.2f} s (best of {args.repeat})")
    print(f"bare CSafeDumper dump of the same objects: {dump_s:.2f} s")
    print(f"ratio warm render / bare dump: {warm_s / dump_s:.2f} (target <= 1.5)")
    print(f"ratio cold render / bare dump: {cold_s / dump_s:.2f}")
    print(f"writing {len(warm.files)} files: {write_s:.2f} s")
    print(f"peak memory (max RSS): {peak_mib:.0f} MiB (target < 1024)")


if __name__ == "__main__":
    main()
