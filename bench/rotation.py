"""Certificate rotations under steady traffic, measured in the mesh lab: how long each step of
``docs/pki.md``'s procedures takes, and how many requests failed during it.

It runs exactly what ``tests/lab/test_lab_rotation.py`` runs (its two tests, called with a
``Drill`` of ``tests/support/rotation.py``, their checks included): the lab of
``tests/lab/meshes/rotation.yaml`` (three clusters, workload certificates of one minute), a
caller in every cluster sending to the echo server of every cluster over HTTP and raw TCP, on a
new connection per request and on one held connection, one request each ``--interval`` seconds
per caller (36 callers); then ``pki rotate --cluster c2`` and apply, and the root rotation
(begin, apply, advance, apply, renewal, finish, apply, the old root gone). It prints one row per
step (wall time, requests answered, requests failed) and the totals per kind of caller.

Needs root. ``.venv/bin/python bench/rotation.py``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT / "tests" / "lab"))

import rotation  # noqa: E402
import test_lab_rotation as procedure  # noqa: E402
from labrun import MESH_LAB, LabRun  # noqa: E402


def kinds(final: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(answered, failed) per kind of caller: new/held, HTTP/TCP."""
    out: dict[str, tuple[int, int]] = {}
    for report in final.values():
        for name, counts in report["callers"].items():
            kind = f"{name.split()[0]} {name.split()[1].split(':')[0].upper()}"
            ok, failed = out.get(kind, (0, 0))
            out[kind] = (ok + counts["ok"], failed + counts["failed"])
    return dict(sorted(out.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=rotation.INTERVAL,
                    help="seconds between one caller's requests")
    args = ap.parse_args()
    rotation.INTERVAL = args.interval
    subprocess.run([str(MESH_LAB), "build"], check=True, capture_output=True)
    folder = Path(tempfile.mkdtemp(prefix="mesh-lab-bench-"))
    folder.chmod(0o755)
    run = LabRun(folder / "lab")
    t0 = time.monotonic()
    run.up(rotation.MESH)
    up = time.monotonic() - t0
    drill = rotation.Drill(run)
    final: dict[str, Any] = {}
    try:
        drill.start_traffic()
        procedure.test_an_intermediate_rotation_under_traffic_drops_nothing(drill)
        procedure.test_a_root_rotation_under_traffic_drops_nothing(drill)
        final = drill.last_report
    finally:
        run.down()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"mesh-lab up (3 clusters, 6 app instances): {up:.1f} s; a request each "
          f"{args.interval} s per caller, 36 callers; workload certificates of 1 minute")
    print(drill.table())
    print(f"advance and finish refused {len(drill.refusals)} times before they were accepted")
    print("| caller | requests | failed |")
    print("| --- | --- | --- |")
    for kind, (ok, failed) in kinds(final).items():
        print(f"| {kind} | {ok:,} | {failed} |")


if __name__ == "__main__":
    main()
