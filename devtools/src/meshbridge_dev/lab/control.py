"""The control planes: per cluster etcd, kube-apiserver and istiod, started in a real cluster's
order, and the wait until istiod has read every object and every proxy has ACKed it.

1. The API servers (k8s-testenv ``up``, inside the lab's ctl network namespace).
2. The install's objects that run nothing: the ``istio`` ConfigMap and the ingress gateway's
   Service, ServiceAccount and RBAC, as ``istioctl manifest generate`` makes them of the
   cluster's rendered IstioOperator, and the lab's Node (``install_objects``).
3. ``meshbridge apply``: the ``cacerts`` Secret and every Istio object, and the gateway
   address of a Cluster the intents give none, discovered from that Service.
4. The kubelet stand-in (``programs.volumes``) fills istiod's ``etc/cacerts`` from the
   ``cacerts`` Secret apply wrote and ``etc/istio/config`` from the ``istio`` ConfigMap, and
   keeps them current; then istiod starts in that folder with the install's environment and
   arguments (k8s-testenv ``istiod``), signing with what apply delivered, and its webhook is
   registered. Every Istio object apply wrote is then submitted again to the API server as a
   dry run, so Istio's webhook judges them (``judge_applied``).
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from meshbridge_dev.testenv import stop_process

from . import istio, kube, net, pki
from .common import (
    ISTIOD_POD_PREFIX,
    NODE_NAME,
    READY_TIMEOUT,
    SYNC_QUIET,
    SYNC_TIMEOUT,
    TESTENV,
    LabError,
    helper,
    log,
    meshbridge,
    wait_until,
)
from .scenario import existing
from .scenario.plan import Plan
from .state import LabState
from .traffic import write_zones

ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


def render(lab: LabState) -> None:
    """Render once to learn each cluster's IstioOperator (and the ingress CA callers trust).

    A Cluster whose gateway address apply will discover has none yet, and render needs one:
    this render's copy of the intents gives it its node's address (no IstioOperator depends on
    it); apply then reads the real one from the cluster."""
    out = lab.path("render")
    docs = list(yaml.safe_load_all(lab.path("intents.yaml").read_text()))
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "Cluster":
            gateway = doc.setdefault("spec", {}).setdefault("gateway", {})
            gateway.setdefault("address", lab.cluster(doc["metadata"]["name"])["node"])
    intents = lab.path("render-intents.yaml")
    intents.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    meshbridge("render", *lab.mb_state(), "-f", str(intents), "-o", str(out))
    ingress_ca = meshbridge("pki", "show", "--ingress-ca", *lab.mb_state(), check=False)
    if ingress_ca.returncode == 0 and "BEGIN CERTIFICATE" in ingress_ca.stdout:
        lab.path("ingress-ca.pem").write_text(ingress_ca.stdout)


def installs(lab: LabState, plan: Plan, tools: dict[str, Path]) -> dict[str, istio.Install]:
    """What istioctl makes of each cluster's rendered IstioOperator. Written to DIR: the mesh
    config the proxies are given (``mesh/CLUSTER.yaml``) and istiod's Deployment
    (``install/CLUSTER.json``: its environment and arguments) for k8s-testenv."""
    out: dict[str, istio.Install] = {}
    for sub in ("mesh", "install"):
        lab.path(sub).mkdir(exist_ok=True)

    def one(cluster: str) -> None:
        operator = lab.path("render", cluster, "istio-system", "istiooperator.meshbridge.yaml")
        if not operator.is_file():
            raise LabError(f"meshbridge rendered no IstioOperator for {cluster} at {operator}")
        install = istio.manifest(tools["istioctl"], operator)
        if cluster in lab.state.get("existing_istio", []):
            install = existing.before_meshbridge(install)
        lab.path("mesh", f"{cluster}.yaml").write_text(yaml.safe_dump(install.mesh))
        # `up --istiod-env` settings over the install's (a test's: istiod's timing, say)
        env = {**install.istiod_env, **lab.state.get("istiod_env", {})}
        lab.path("install", f"{cluster}.json").write_text(json.dumps(
            {"env": env, "args": install.istiod_args}, indent=1, sort_keys=True))
        with lab.lock:
            lab.cluster(cluster)["cluster_id"] = install.cluster_id
            out[cluster] = install
    with ThreadPoolExecutor(max_workers=4) as pool:  # istioctl runs a few seconds each
        list(pool.map(one, plan.clusters))
    lab.save()
    return out


def start_api_servers(lab: LabState, plan: Plan) -> None:
    args = [*TESTENV, "up", "--dir", str(lab.path("testenv")), *plan.clusters]
    log(f"starting {len(plan.clusters)} API servers (etcd, kube-apiserver)")
    lab.state["testenv"] = str(lab.path("testenv"))  # recorded first: `down` stops them
    lab.save()
    run_testenv(args, "up")


def run_testenv(args: list[str], what: str) -> None:
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise LabError(f"k8s-testenv {what} failed:\n{proc.stderr[-4000:]}")


def install_objects(lab: LabState, cluster: str, install: istio.Install) -> None:
    """What an install creates before anything runs: the istio-system namespace, the ``istio``
    ConfigMap, the gateway's Service, ServiceAccount and RBAC; and the lab's Node. The
    NodePorts the API server gave the gateway Service are recorded."""
    info = lab.cluster(cluster)
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
        node_labels = {key: v for key, v in info["labels"].items()
                       if key.startswith("topology.kubernetes.io/")}
        k.apply([kube.namespace("istio-system"), install.mesh_config_map,
                 kube.node(NODE_NAME, info["node"], node_labels,
                           (info["kubelet"]["address"], net.KUBELET_PORT))])
        info["node_ports"] = node_ports_of(k.apply(install.gateway_objects))
    finally:
        k.close()
    lab.save()


def node_ports_of(services: list[Any]) -> dict[str, dict[str, Any]]:
    """The gateway Service's ports, as the API server assigned their NodePorts."""
    node_ports = {}
    for svc in services:
        if getattr(svc, "kind", None) == "Service":
            for p in svc.spec.ports or []:
                node_ports[str(p.port)] = {"node_port": p.nodePort,
                                           "target": int(p.targetPort or p.port),
                                           "name": p.name}
    return node_ports


def istiod_home(lab: LabState, cluster: str) -> Path:
    """istiod's working folder, laid out as its pod's file system (etc/cacerts holds a CA key:
    the folder is root's alone)."""
    home = lab.path("istiod", cluster)
    home.mkdir(parents=True, exist_ok=True)
    lab.path("istiod").chmod(0o700)
    return home


def start_volumes(lab: LabState, cluster: str) -> None:
    """The kubelet stand-in for istiod's volumes: ``cacerts`` and the ``istio`` ConfigMap."""
    home = istiod_home(lab, cluster)
    cmd = helper("volumes", "--kubeconfig", str(lab.kubeconfig(cluster)),
                 "--volume", f"secret:istio-system/cacerts={home / 'etc' / 'cacerts'}",
                 "--volume", f"configmap:istio-system/istio={home / 'etc' / 'istio' / 'config'}")
    lab.cluster(cluster)["volumes"] = lab.spawn(cmd, lab.path(f"volumes-{cluster}.log"))
    lab.save()


def start_kubelet(lab: LabState, cluster: str) -> None:
    """The kubelet stand-in for the streaming endpoint (``programs.kubelet``): pods/portforward
    to istiod, at the Node's InternalIP, with a serving certificate of the cluster's own CA."""
    info = lab.cluster(cluster)
    pki_dir = lab.path("testenv", cluster, "pki")
    cert, key = pki.server_certificate(pki_dir / "ca.crt", pki_dir / "ca.key",
                                       lab.path("kubelet", cluster), [info["kubelet"]["address"]])
    cmd = helper("kubelet", "--kubeconfig", str(lab.kubeconfig(cluster)), "--node", NODE_NAME,
                 "--listen", f"{info['kubelet']['address']}:{net.KUBELET_PORT}",
                 "--cert", str(cert), "--key", str(key), "--client-ca", str(pki_dir / "ca.crt"))
    info["kubelet"]["proc"] = lab.spawn(cmd, lab.path(f"kubelet-{cluster}.log"))
    lab.save()


def publish_istiod(lab: LabState, cluster: str, install: istio.Install) -> None:
    """What a cluster holds for a running istiod: its Pod (bound to the lab's node, Running, its
    IP the address istiod serves on; named as istiod's own POD_NAME) with the labels, annotations
    and container ports of the install's istiod Deployment, the install's ``istiod`` Service and
    its EndpointSlice."""
    info = lab.cluster(cluster)
    name = f"{ISTIOD_POD_PREFIX}{cluster}"  # k8s-testenv gives istiod this POD_NAME
    template = install.istiod_pod
    containers = [{"name": c["name"], "ports": c["ports"]} for c in template["containers"]]
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
        k.apply([kube.pod(name, "istio-system", template["labels"], "istiod", NODE_NAME,
                          containers, template["annotations"]), install.istiod_service])
        k.set_pod_status(name, "istio-system", kube.pod_status(info["istiod"], info["node"]))
        ports = [{"name": p["name"], "port": int(p.get("targetPort") or p["port"]),
                  "protocol": "TCP"} for p in install.istiod_service["spec"]["ports"]]
        k.apply([kube.endpoint_slice("istiod", "istio-system", ports,
                                     [(name, info["istiod"], NODE_NAME)])])
    finally:
        k.close()
    info["istiod_pod"] = name
    lab.save()


def stop_istiod(lab: LabState, cluster: str) -> None:
    """istiod's process stops, as when its container dies; its Pod object stays (a kubelet would
    report it not ready and restart it: meshbridge does not rely on either)."""
    record = json.loads(lab.path("testenv", "k8s-testenv.json").read_text())
    proc = record["clusters"][cluster].get("istiod") or {}
    if not stop_process(proc, f"{cluster} istiod", grace=5):
        raise LabError(f"{cluster}: istiod (pid {proc.get('pid')}) survived SIGKILL")
    log(f"{cluster}: istiod stopped (its Pod object stays)")


def start_istiods(lab: LabState, plan: Plan) -> None:
    """istiod per cluster, once the kubelet stand-in has delivered the ``cacerts`` apply wrote
    (istiod would otherwise make a CA of its own), with the install's environment. A cluster
    started as one that already ran Istio (``up --existing-istio``) has no ``cacerts`` yet:
    its istiod makes its own CA, as on the day it was installed."""
    existing = set(lab.state.get("existing_istio", []))

    def delivered() -> str | None:
        for cluster in plan.clusters:
            etc = istiod_home(lab, cluster) / "etc"
            for need in ("cacerts/root-cert.pem", "istio/config/mesh"):
                if need.startswith("cacerts") and cluster in existing:
                    continue
                if not (etc / need).is_file():
                    return f"{cluster}: {need} not delivered yet (see volumes-{cluster}.log)"
        return None
    wait_until("the cacerts Secret and the istio ConfigMap in istiod's volumes", delivered,
               READY_TIMEOUT)
    log(f"starting istiod in {len(plan.clusters)} clusters")
    run_testenv(istiod_command(lab, list(plan.clusters)), "istiod")


def istiod_command(lab: LabState, clusters: list[str]) -> list[str]:
    """k8s-testenv ``istiod`` for ``clusters``: each in its home, with its install, at its
    address."""
    args = [*TESTENV, "istiod", "--dir", str(lab.path("testenv"))]
    for cluster in clusters:
        info = lab.cluster(cluster)
        args += ["--home", f"{cluster}={istiod_home(lab, cluster)}",
                 "--install", f"{cluster}={lab.path('install', cluster + '.json')}",
                 "--address", f"{cluster}={info['istiod']}"]
    return [*args, *clusters]


def judge_applied(lab: LabState) -> None:
    """Every Istio object in each cluster, submitted again as a dry run now that Istio's
    webhook is registered: what a real cluster would refuse fails the lab."""
    for cluster in lab.state["clusters"]:
        k = kube.Kube(lab.kubeconfig(cluster))
        try:
            refused = k.judge_istio()
        finally:
            k.close()
        if refused:
            raise LabError(f"{cluster}: Istio's webhook refuses what meshbridge applied:\n  "
                           + "\n  ".join(refused))


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


def apply(lab: LabState, clusters: list[str] | None = None) -> None:
    """``meshbridge apply`` of the lab's intents (to ``clusters`` only, when given); its output
    is kept in DIR/apply.log."""
    log("meshbridge apply")
    only = [a for c in clusters or [] for a in ("--cluster", c)]
    proc = meshbridge("apply", *lab.mb_state(), "-f", str(lab.path("intents.yaml")), *only,
                      check=False)
    with lab.path("apply.log").open("a") as out:
        out.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise LabError(f"meshbridge apply failed (exit {proc.returncode}):\n"
                       f"{proc.stderr.strip() or proc.stdout.strip()}")


def apply_and_wait(lab: LabState) -> None:
    apply(lab)
    wait_synced(lab)


def expected_proxies(lab: LabState, cluster: str) -> set[str]:
    return {f"{rec['name']}.{rec['namespace']}" for rec in lab.state["pods"].values()
            if rec["cluster"] == cluster and "proxy" in rec.get("procs", {})
            and not rec.get("proxy_stopped")}


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
