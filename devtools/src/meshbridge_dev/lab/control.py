"""The control planes: per cluster etcd, kube-apiserver and istiod, and the wait until istiod has
read every object and every proxy has ACKed what it was sent.

istiod's CA is the cluster's rendered ``cacerts`` (``meshbridge pki export``) and its mesh config
the one ``istioctl manifest generate`` derives from the cluster's rendered IstioOperator: the lab
runs what the user would install. The servers themselves are k8s-testenv's (``up --istiod``),
inside the lab's ctl network namespace.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from . import istio, kube, net
from .common import SYNC_QUIET, SYNC_TIMEOUT, TESTENV, LabError, helper, log, meshbridge, wait_until
from .plan import Plan
from .state import LabState
from .traffic import write_zones

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


def render(lab: LabState) -> None:
    """Render once to learn each cluster's IstioOperator, and export its CA for istiod."""
    out = lab.path("render")
    intents = str(lab.path("intents.yaml"))
    meshbridge("render", *lab.mb_state(), "-f", intents, "-o", str(out))
    for cluster in lab.state["clusters"]:
        dest = lab.path("ca", cluster)
        meshbridge("pki", "export", "--cluster", cluster, "--dir", str(dest),
                   *lab.mb_state(), "-f", intents)
    ingress_ca = meshbridge("pki", "show", "--ingress-ca", *lab.mb_state(), check=False)
    if ingress_ca.returncode == 0 and "BEGIN CERTIFICATE" in ingress_ca.stdout:
        lab.path("ingress-ca.pem").write_text(ingress_ca.stdout)


def installs(lab: LabState, plan: Plan, tools: dict[str, Path]) -> dict[str, istio.Install]:
    """What istioctl makes of each cluster's rendered IstioOperator; the mesh configs written
    to ``DIR/mesh/CLUSTER.yaml`` for istiod."""
    out = {}
    mesh_dir = lab.path("mesh")
    mesh_dir.mkdir(exist_ok=True)
    for cluster in plan.clusters:
        operator = lab.path("render", cluster, "istio-system", "istiooperator.meshbridge.yaml")
        if not operator.is_file():
            raise LabError(f"meshbridge rendered no IstioOperator for {cluster} at {operator}")
        install = istio.manifest(tools["istioctl"], operator)
        (mesh_dir / f"{cluster}.yaml").write_text(yaml.safe_dump(install.mesh))
        out[cluster] = install
    return out


def start_control_planes(lab: LabState, plan: Plan) -> None:
    args = [*TESTENV, "up", "--istiod", "--dir", str(lab.path("testenv"))]
    for cluster in plan.clusters:
        info = lab.cluster(cluster)
        args += ["--istiod-cacerts", f"{cluster}={lab.path('ca', cluster)}",
                 "--istiod-mesh", f"{cluster}={lab.path('mesh', cluster + '.yaml')}",
                 "--istiod-address", f"{cluster}={info['istiod']}"]
    args += list(plan.clusters)
    log(f"starting {len(plan.clusters)} control planes (etcd, kube-apiserver, istiod)")
    lab.state["testenv"] = str(lab.path("testenv"))  # recorded first: `down` stops them
    lab.save()
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"k8s-testenv up failed:\n{proc.stderr[-4000:]}")


def stop_control_planes(lab: LabState) -> list[str]:
    """k8s-testenv down (in the ctl namespace, where its ports are); what failed."""
    if not (lab.state.get("testenv") and Path(lab.state["testenv"]).is_dir()):
        return []
    ctl = lab.fabric.ctl
    cmd = [*TESTENV, "down", "--dir", lab.state["testenv"]]
    if net.netns_exists(ctl):
        cmd = ["ip", "netns", "exec", ctl, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          check=False)
    if proc.returncode != 0:
        return [f"k8s-testenv down: {proc.stderr.strip()[-2000:]}"]
    return []


def start_dns(lab: LabState) -> None:
    """The cluster-DNS stand-in: one process, one address per cluster."""
    write_zones(lab)
    listen = [a for c in lab.state["clusters"].values() for a in ("--listen", c["dns"])]
    cmd = helper("dns", "--zones", str(lab.path("dns.json")), *listen)
    lab.state["dns"] = lab.spawn(cmd, lab.path("dns.log"))
    lab.save()


def apply_and_wait(lab: LabState) -> None:
    log("meshbridge apply")
    proc = meshbridge("apply", *lab.mb_state(), "-f", str(lab.path("intents.yaml")),
                      check=False)
    lab.path("apply.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise LabError(f"meshbridge apply failed (exit {proc.returncode}):\n"
                       f"{proc.stderr.strip() or proc.stdout.strip()}")
    wait_synced(lab)


def expected_proxies(lab: LabState, cluster: str) -> set[str]:
    return {f"{rec['name']}.{rec['namespace']}" for rec in lab.state["pods"].values()
            if rec["cluster"] == cluster and "proxy" in rec.get("procs", {})}


def istio_objects(lab: LabState) -> dict[str, dict[ObjectKey, str]]:
    """Every Istio object now in each cluster, with its resourceVersion."""
    wanted = {}
    for cluster in lab.state["clusters"]:
        k = kube.Kube(lab.kubeconfig(cluster))
        try:
            wanted[cluster] = k.list_istio()
        finally:
            k.close()
    return wanted


def cluster_sync(lab: LabState, cluster: str, debug: str, wanted: dict[ObjectKey, str]
                 ) -> tuple[str | None, Any]:
    """(why the cluster is not in sync, or None; what istiod last sent each proxy).

    A NACK is an error at once: waiting would not change Envoy's mind."""
    seen = {(c["kind"], c["metadata"].get("namespace", ""), c["metadata"]["name"]):
            c["metadata"].get("resourceVersion") for c in istio.configz(debug)}
    for key, version in wanted.items():
        if seen.get(key) != version:
            return f"{cluster}: istiod has not read {key[0]} {key[1]}/{key[2]} yet", None
    entries = istio.syncz(debug)
    problems = istio.sync_problems(entries, expected_proxies(lab, cluster))
    nacked = [p for p in problems if ": NACK of " in p]
    if nacked:
        raise LabError(f"{cluster}: a proxy rejected its configuration:\n  "
                       + "\n  ".join(nacked))
    if problems:
        return problems[0], None
    return None, sorted((e.get("proxy"), sorted((t, r.get("sent"))
                                                for t, r in (e.get("resources") or {}).items()))
                        for e in entries)


def wait_synced(lab: LabState) -> None:
    """istiod has read every Istio object now in its cluster, and every proxy has ACKed the
    configuration istiod last sent it, and that state held still for SYNC_QUIET seconds."""
    wanted = istio_objects(lab)
    debug = {cluster: lab.istiod_debug(cluster) for cluster in lab.state["clusters"]}
    last: dict[str, Any] = {}
    quiet_since = [time.monotonic()]

    def check() -> str | None:
        snapshot: dict[str, Any] = {}
        for cluster in lab.state["clusters"]:
            why, sent = cluster_sync(lab, cluster, debug[cluster], wanted[cluster])
            if why is not None:
                quiet_since[0] = time.monotonic()
                return why
            snapshot[cluster] = sent
        if snapshot != last.get("value"):
            last["value"] = snapshot
            quiet_since[0] = time.monotonic()
            return "istiod is still pushing"
        if time.monotonic() - quiet_since[0] < SYNC_QUIET:
            return "waiting for istiod to stay quiet"
        return None
    wait_until("every proxy to ACK its configuration", check, SYNC_TIMEOUT, interval=0.3)
    log("every proxy has ACKed its configuration")
