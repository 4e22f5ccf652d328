"""Steady traffic in a running lab: ``mesh-lab traffic start|report|stop``.

``start`` runs ``programs.steady`` in a client pod's network namespace, through its sidecar as
that app's own requests go (``traffic.client_command``'s way: the pod's DNS, the capture), and
records the process with the pod's other processes (``procs.traffic``), so ``down`` stops it
with them. Its report is ``pods/<pod>.traffic.json``. ``report`` reads every report as it is;
``stop`` ends every traffic program (SIGTERM: each caller finishes its request) and returns the
final reports.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

from meshbridge_dev.testenv import is_ours, stop_process

from .. import net
from ..common import LabError, helper, log, wait_until
from ..state import LabState

STOP_TIMEOUT = 30.0


def start(lab: LabState, key: str, rec: dict[str, Any], new: list[str], held: list[str],
          interval: float) -> None:
    running = rec["procs"].get("traffic")
    if running is not None and is_ours(running):
        raise LabError(f"{key} already sends steady traffic: `mesh-lab traffic stop` first")
    out = lab.pod_file(key, ".traffic.json")
    out.unlink(missing_ok=True)
    args = ["--out", str(out), "--interval", str(interval)]
    args += [a for url in new for a in ("--new", url)]
    args += [a for url in held for a in ("--held", url)]
    root = lab.pod_dir(key)
    cmd = net.in_netns(lab.fabric.ns(rec["netns"]), helper("steady", *args),
                       hosts=root / "hosts", resolv=root / "resolv.conf")
    rec["procs"]["traffic"] = lab.spawn(cmd, lab.pod_file(key, ".traffic.log"))
    lab.save()
    wait_until(f"{key}'s steady traffic to report", lambda: None if out.is_file() else
               "no report yet", 30)
    log(f"{key}: steady traffic to {len(new) + len(held)} callers, one request each "
        f"{interval}s")


def reports(lab: LabState) -> dict[str, Any]:
    """Every pod's traffic report as it stands, by pod."""
    out = {}
    for key in sorted(lab.state["pods"]):
        path = lab.pod_file(key, ".traffic.json")
        if path.is_file():
            out[key] = json.loads(path.read_text())
    return out


def stop(lab: LabState) -> dict[str, Any]:
    """Stop every traffic program; their final reports."""
    stopping = [(key, rec["procs"].pop("traffic")) for key, rec in lab.state["pods"].items()
                if "traffic" in rec.get("procs", {})]
    if not stopping:
        raise LabError("no steady traffic runs in this lab (`mesh-lab traffic start`)")
    t0 = time.monotonic()
    for _, proc in stopping:  # all at once; then wait for each
        if is_ours(proc):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc["pid"], signal.SIGTERM)
    for key, proc in stopping:
        if not stop_process(proc, f"{key} traffic", grace=STOP_TIMEOUT):
            raise LabError(f"{key}'s traffic program survived SIGKILL")
    lab.save()
    final = reports(lab)
    unfinished = [k for k, _ in stopping if final.get(k, {}).get("running", True)]
    if unfinished:
        raise LabError(f"the traffic of {', '.join(unfinished)} ended without its final report "
                       f"(see its .traffic.log)")
    log(f"steady traffic stopped in {time.monotonic() - t0:.1f}s")
    return final
