"""Taking a lab down, and proving it is gone: no recorded process, no process in one of its
network namespaces, no namespace, no control plane left."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from meshbridge_dev.testenv import Record, is_ours, proc_start_time, stop_process

from .common import LabError, log
from .control import stop_control_planes
from .state import LabState


def recorded_processes(lab: LabState) -> list[tuple[str, Record]]:
    recs: list[tuple[str, Record]] = []
    for key, rec in lab.state.get("pods", {}).items():
        for name, proc in rec.get("procs", {}).items():
            recs.append((f"{key} {name}", proc))
    if lab.state.get("dns"):
        recs.append(("dns", lab.state["dns"]))
    if lab.state.get("serve"):
        recs.append(("meshbridge serve", lab.state["serve"]["proc"]))
    for name, info in lab.state.get("clusters", {}).items():
        if info.get("volumes"):
            recs.append((f"{name} volumes", info["volumes"]))
        if (info.get("kubelet") or {}).get("proc"):
            recs.append((f"{name} kubelet", info["kubelet"]["proc"]))
    return recs


def stop_recorded(lab: LabState) -> list[str]:
    """SIGKILL every recorded process at once (the whole lab goes, nothing needs draining);
    the ones that survived."""
    recs = recorded_processes(lab)
    for _, proc in recs:
        if is_ours(proc):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc["pid"], signal.SIGKILL)
    return [f"{label} (pid {proc['pid']}) survived SIGKILL" for label, proc in recs
            if not stop_process(proc, label, grace=5)]


def kill_in_namespaces(inodes: set[int]) -> list[str]:
    """SIGKILL any process still inside the lab's network namespaces (say, an Envoy whose agent
    died first), and report any that survive."""
    def stragglers() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    pids.append(int(entry.name))
            except OSError:
                continue
        return pids
    for pid in stragglers():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    left = stragglers()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in stragglers() if proc_start_time(p) is not None]
    return [f"pid {p} is still running in a lab network namespace" for p in left]


def down(lab: LabState, quiet: bool = False) -> None:
    """Stop everything the lab started, delete its namespaces; LabError naming what survived."""
    if not lab.state:
        lab.load()
    failed = stop_recorded(lab)
    failed += stop_control_planes(lab)
    failed += kill_in_namespaces(set(lab.state.get("netns", {}).values()))
    failed += [f"network namespace {n} could not be deleted" for n in lab.fabric.destroy()]
    if failed:
        raise LabError("down incomplete:\n  " + "\n  ".join(failed))
    lab.state_path.unlink(missing_ok=True)
    if not quiet:
        log(f"down: every process stopped, every network namespace deleted ({lab.dir})")
