"""The pods: for every App placement a stub workload behind a real sidecar, for every
ExternalService a stand-in host, and the proxies' common start-up (the sidecar injector's part).

A pod is a network namespace of its own with one address, the objects a cluster would hold for
it (Pod with status, ServiceAccount, a projected token for istiod's TokenReview), Istio's own
capture rules (``pilot-agent istio-iptables`` as the injector's init container runs it), and
``pilot-agent proxy sidecar`` running the stock Envoy as uid 1337 in a working folder laid out
like the istio-proxy container.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from meshbridge_dev.testenv import is_ours, log_tail, stop_process

from . import istio, kube, net, pki
from .common import (
    GATEWAY_NAME,
    NODE_NAME,
    OUTSIDE_HOST,
    OUTSIDE_KEY,
    READY_TIMEOUT,
    ROOT_CERT_DIR,
    SIDECAR_UID,
    LabError,
    each,
    helper,
    log,
    wait_until,
)
from .scenario.plan import TLS_PROTOCOLS, External, Instance, Plan
from .services import publish_endpoints
from .state import LabState
from .traffic import write_zones

Pod = dict[str, Any]  # a pod's record in the lab's state


def new_pod(lab: LabState, key: str, kind: str, cluster: str | None, namespace: str, app: str,
            address: str) -> Pod:
    """A pod's record and network namespace (``kind``: app, gateway, external, outside)."""
    with lab.lock:
        port = lab.next_port()
        role = f"p{port}"
        name = {"app": f"{app}-lab", "gateway": GATEWAY_NAME}.get(kind, app)
        rec: Pod = {"kind": kind, "cluster": cluster, "namespace": namespace, "app": app,
               "name": name, "address": address, "netns": role, "veth": port, "procs": {}}
        lab.state["pods"][key] = rec
        netns = lab.fabric.attach(role, port, [address])
        lab.record_netns(netns)
        lab.save()
        return rec


def pod_address(lab: LabState, cluster: str) -> str:
    index = int(lab.cluster(cluster)["index"])
    used = {p["address"] for p in lab.state["pods"].values()}
    for n in range(10, 250):
        address = net.pod_address(index, n)
        if address not in used:
            return address
    raise LabError(f"cluster {cluster}: no pod address left (at most 240 pods a cluster)")


def hosts_and_resolv(lab: LabState, rec: Pod) -> tuple[str, str]:
    """The pod's /etc/hosts and /etc/resolv.conf (its cluster's DNS stand-in)."""
    hosts = (f"127.0.0.1\tlocalhost\n{rec['address']}\t{rec['name']}\n")
    if rec["cluster"] is None:
        return hosts, f"nameserver {net.NAMESERVER}\n"
    cluster = lab.cluster(rec["cluster"])
    # istiod's name, as a Service of the cluster would make it resolvable.
    hosts += f"{cluster['istiod']}\t{istio.ISTIOD_HOST}\n"
    ns = rec["namespace"]
    resolv = (f"nameserver {cluster['dns']}\n"
              f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
              f"options ndots:5\n")
    return hosts, resolv


def injected_labels(inst: Instance) -> dict[str, str]:
    """The pod's labels as the sidecar injector leaves them: the app's own, plus the ones that
    tell other proxies this pod speaks Istio mTLS (auto mTLS reads tlsMode) and name its
    canonical service."""
    return {**inst.labels, "security.istio.io/tlsMode": "istio",
            "service.istio.io/canonical-name": inst.labels.get("app", inst.app),
            "service.istio.io/canonical-revision": "latest"}


def start_proxy(lab: LabState, key: str, rec: Pod, tools: dict[str, Path], env: dict[str, str],
                labels: dict[str, str], token: str, args: list[str]) -> None:
    """pilot-agent (and through it Envoy) in the pod, as uid 1337, in its working folder."""
    root = lab.pod_dir(key)
    if root.exists():
        shutil.rmtree(root)
    hosts, resolv = hosts_and_resolv(lab, rec)
    istio.prepare_pod_dir(root, token=token, template=tools["envoy-bootstrap-template"],
                          labels=labels, annotations={}, hosts=hosts, resolv=resolv)
    mount_published_root(lab, key, rec, root / ROOT_CERT_DIR)
    cmd = net.in_netns(lab.fabric.ns(rec["netns"]), [str(tools["pilot-agent"]), *args],
                       hosts=root / "hosts", resolv=root / "resolv.conf", cwd=root,
                       uid=SIDECAR_UID)
    # Envoy reopens /dev/stdout for the access log: its log file must be the proxy user's.
    logfile = root / "proxy.log"
    logfile.touch()
    os.chown(logfile, SIDECAR_UID, SIDECAR_UID)
    rec["procs"]["proxy"] = lab.spawn(cmd, logfile, env=env)
    rec["proxy"] = {"env": env, "labels": labels, "args": args}  # for a restart (restarts.py)
    lab.save()


def mount_published_root(lab: LabState, key: str, rec: Pod, folder: Path) -> None:
    """The mesh root a pod trusts: the ``istio-ca-root-cert`` ConfigMap istiod publishes in the
    pod's namespace, kept in istio-proxy's ``var/run/secrets/istio`` as the kubelet keeps a
    config-map volume (the lab's ``programs.volumes``): pilot-agent verifies istiod with it,
    and watches it, so when istiod publishes other roots (a rotation, a restart onto another CA)
    the pod follows, as in a cluster. Returns once istiod has published it and it is there."""
    old = rec["procs"].get("volumes")
    if old is not None:
        stop_process(old, f"{key} volumes", grace=5)
    cmd = helper("volumes", "--kubeconfig", str(lab.kubeconfig(rec["cluster"])), "--volume",
                 f"configmap:{rec['namespace']}/istio-ca-root-cert={folder}")
    rec["procs"]["volumes"] = lab.spawn(cmd, lab.pod_file(key, ".volumes.log"))
    lab.save()
    wait_until(f"istiod to publish its root in {rec['namespace']}@{rec['cluster']}",
               lambda: None if (folder / "root-cert.pem").is_file()
               else f"no istio-ca-root-cert in namespace {rec['namespace']} yet",
               READY_TIMEOUT)


def sync_pods(lab: LabState, plan: Plan, tools: dict[str, Path], *,
              ready_first: bool = False) -> None:
    """Start the pods the plan has and the lab lacks; stop the ones it no longer has.
    ``ready_first``: publish a new pod's endpoint once its proxy is ready, as a kubelet marks
    a pod's endpoint ready only once its readiness probe passes (``deploy``: what finds it
    running must not route to it before it can answer)."""
    wanted = dict(plan.instances)
    for key, rec in list(lab.state["pods"].items()):
        if rec["kind"] in ("app", "external") and key not in wanted and \
                key not in plan.externals:
            remove_pod(lab, key)
    by_cluster: dict[str, list[Instance]] = {}
    for key, inst in wanted.items():
        if key not in lab.state["pods"]:
            by_cluster.setdefault(inst.cluster, []).append(inst)
    # Every new pod gets its address, and the DNS stand-in its name, before any proxy starts:
    # a proxy resolves the Service names of its configuration (DNS-resolved ServiceEntry
    # endpoints) when the configuration arrives, and a real cluster's DNS answers for a Service
    # before its pods run.
    claimed = {c: [(inst, claim_pod(lab, inst)) for inst in by_cluster[c]] for c in by_cluster}
    write_zones(lab)
    each(lambda c: start_instances(lab, c, claimed[c], tools), sorted(claimed))
    for key, ext in plan.externals.items():
        if key not in lab.state["pods"]:
            start_external(lab, key, ext)
    if OUTSIDE_KEY not in lab.state["pods"]:
        start_outside(lab)
    if ready_first:
        wait_ready(lab)
    publish_endpoints(lab, plan)
    if ready_first:  # when what watches the clusters could first find the new pods
        log(f"endpoints published at {time.time():.3f}")
    write_zones(lab)
    wait_ready(lab)


def claim_pod(lab: LabState, inst: Instance) -> Pod:
    """An app pod's record, address and network namespace; nothing runs yet."""
    with lab.lock:
        rec = new_pod(lab, inst.key, "app", inst.cluster, inst.namespace, inst.app,
                      pod_address(lab, inst.cluster))
        rec["ports"] = [[p.number, p.protocol, p.service] for p in inst.ports]
        rec["tls_names"] = list(inst.external_hosts)
        rec["service_account"] = inst.service_account
        rec["labels"] = inst.labels
        lab.save()
        return rec


def start_instances(lab: LabState, cluster: str, claimed: list[tuple[Instance, Pod]],
                    tools: dict[str, Path]) -> None:
    """The app pods of one cluster, with the objects the cluster holds for them."""
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
        for inst, rec in claimed:
            k.apply([kube.namespace(inst.namespace),
                     kube.service_account(inst.service_account, inst.namespace)])
            k.apply([kube.pod(rec["name"], inst.namespace, injected_labels(inst),
                              inst.service_account, NODE_NAME, ["app", "istio-proxy"])])
            k.set_pod_status(rec["name"], inst.namespace,
                             kube.pod_status(rec["address"], lab.cluster(cluster)["node"]))
            token = k.token(inst.service_account, inst.namespace)
            start_app_pod(lab, inst, rec, tools, token)
    finally:
        k.close()


def start_app_pod(lab: LabState, inst: Instance, rec: Pod, tools: dict[str, Path],
                  token: str) -> None:
    """Capture rules, stub and sidecar of one app pod."""
    netns = lab.fabric.ns(rec["netns"])
    env = istio.pod_env(
        name=rec["name"], namespace=inst.namespace, address=rec["address"], node=NODE_NAME,
        node_address=lab.cluster(inst.cluster)["node"],
        service_account=inst.service_account,
        cluster=lab.cluster(inst.cluster)["cluster_id"], mesh=lab.mesh(inst.cluster),
        envoy=istio.envoy_binary(), workload=inst.app, ports=[p.number for p in inst.ports],
    )
    # The istio-init container: Istio's own capture rules, with the injector's arguments.
    init = subprocess.run(
        net.in_netns(netns, istio.iptables_command(tools["pilot-agent"]),
                     resolv=resolv_file(lab, inst.key, rec)),
        env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if init.returncode != 0:
        raise LabError(f"{inst.key}: istio-iptables failed:\n{init.stderr[-2000:]}")
    start_stub(lab, inst.key, rec)
    start_proxy(lab, inst.key, rec, tools, env, injected_labels(inst), token,
                ["proxy", "sidecar", "--domain", f"{inst.namespace}.svc.cluster.local",
                 "--proxyLogLevel=warning", "--log_output_level=default:info"])


def resolv_file(lab: LabState, key: str, rec: Pod) -> Path:
    """The pod's resolv.conf (istio-iptables captures DNS to the servers it names)."""
    path = lab.pod_file(key, ".resolv.conf")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hosts_and_resolv(lab, rec)[1])
    return path


def stub_command(rec: Pod) -> list[str]:
    cmd = helper("stub", "--cluster", rec["cluster"] or "external",
                 "--namespace", rec["namespace"], "--app", rec["app"])
    tls = False
    for number, protocol, _ in rec.get("ports", []):
        if protocol in TLS_PROTOCOLS:
            cmd += ["--tls-port", str(number)]
            tls = True
        else:
            cmd += ["--port", str(number)]
    if tls:
        cert, key = rec["tls"]
        cmd += ["--cert", cert, "--key", key]
    return cmd


def start_stub(lab: LabState, key: str, rec: Pod) -> None:
    """The pod's stub workload, answering on its ports (TLS ones with a lab certificate)."""
    if not rec.get("ports"):
        return  # a pure client: nothing listens
    if any(p[1] in TLS_PROTOCOLS for p in rec["ports"]) and "tls" not in rec:
        names = sorted(set(rec.get("tls_names") or []) | {rec["name"]})
        rec["tls"] = [str(p) for p in pki.stub_certificate(
            lab.path("lab-ca"), lab.pod_file(key, "-tls"), names)]
    logfile = lab.pod_file(key, ".stub.log")
    logfile.parent.mkdir(parents=True, exist_ok=True)
    cmd = net.in_netns(lab.fabric.ns(rec["netns"]), stub_command(rec))
    rec["procs"]["stub"] = lab.spawn(cmd, logfile)
    lab.save()


def start_external(lab: LabState, key: str, ext: External) -> None:
    """An ExternalService's stand-in host, one address per declared endpoint."""
    info = lab.state["externals"][key]
    rec = new_pod(lab, key, "external", None, ext.namespace, ext.name, info["addresses"][0])
    for extra in info["addresses"][1:]:
        lab.fabric.add_address(rec["netns"], extra)
    rec["ports"] = [[p.number, p.protocol, p.service] for p in ext.ports]
    rec["tls_names"] = list(ext.hosts)
    start_stub(lab, key, rec)


def start_outside(lab: LabState) -> None:
    """A host outside the mesh that no intent declares (``outside.mesh-lab``, HTTP on 80 and
    HTTPS on 443): reachable from outside the mesh, so that a refusal from inside it is the
    mesh's doing (REGISTRY_ONLY), not the network's."""
    rec = new_pod(lab, OUTSIDE_KEY, "outside", None, "outside", OUTSIDE_HOST, net.OUTSIDE_ADDRESS)
    rec["ports"] = [[80, "HTTP", OUTSIDE_HOST], [443, "HTTPS", OUTSIDE_HOST]]
    rec["tls_names"] = [OUTSIDE_HOST]
    start_stub(lab, OUTSIDE_KEY, rec)


def remove_pod(lab: LabState, key: str) -> None:
    rec = lab.state["pods"].pop(key)
    for name, proc in rec.get("procs", {}).items():
        stop_process(proc, f"{key} {name}", grace=5)
    lab.fabric.detach(rec["netns"])
    lab.state["netns"].pop(lab.fabric.ns(rec["netns"]), None)
    if rec["kind"] == "app" and rec["cluster"] in lab.state["clusters"]:
        k = kube.Kube(lab.kubeconfig(rec["cluster"]))
        try:
            k.delete([kube.pod(rec["name"], rec["namespace"], {}, "", "", [])])
        finally:
            k.close()
    lab.save()


def not_ready(key: str, rec: Pod) -> str | None:
    """Why the pod's proxy is not ready yet (None when it is); LabError when it died."""
    proc = rec.get("procs", {}).get("proxy")
    if proc is None or rec.get("proxy_stopped"):
        return None
    if not is_ours(proc):
        raise LabError(f"{key}: the proxy exited; last lines of {proc['log']}:\n"
                       f"{log_tail(proc['log'], 30)}")
    url = f"http://{rec['address']}:{istio.STATUS_PORT}/healthz/ready"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status != 200:
                return f"{key}: /healthz/ready answered {resp.status}"
    except (OSError, urllib.error.URLError) as e:
        return f"{key}: /healthz/ready: {e}"
    return None


def wait_ready(lab: LabState) -> None:
    """Every proxy reports ready (pilot-agent's /healthz/ready: Envoy has its first config
    from istiod and its certificate)."""
    def check() -> str | None:
        for key, rec in sorted(lab.state["pods"].items()):
            why = not_ready(key, rec)
            if why is not None:
                return why
        for key, rec in sorted(lab.state["pods"].items()):
            stub = rec.get("procs", {}).get("stub")
            if stub is not None and not is_ours(stub) and not rec.get("stopped"):
                raise LabError(f"{key}: the stub exited; last lines of {stub['log']}:\n"
                               f"{log_tail(stub['log'], 30)}")
        return None
    wait_until("every proxy to be ready", check, READY_TIMEOUT)


def stop_stub(lab: LabState, key: str, rec: Pod) -> None:
    """A dead app behind a live proxy: the stub stops, its sidecar and endpoint stay."""
    proc = rec["procs"].get("stub")
    if proc is None:
        raise LabError(f"{key} has no ports: nothing to stop")
    stop_process(proc, f"{key} stub", grace=5)
    rec["stopped"] = True
    lab.save()
    log(f"{key}: stub stopped (its sidecar stays)")


def stop_proxy(lab: LabState, key: str, rec: Pod) -> None:
    """The pod's proxy stops (pilot-agent and its Envoy, as when the istio-proxy container
    dies): it disconnects from istiod; the app, the Pod object and its endpoint stay."""
    proc = rec["procs"].get("proxy")
    if proc is None:
        raise LabError(f"{key} has no proxy")
    if not stop_process(proc, f"{key} proxy", grace=5):
        raise LabError(f"{key}: its proxy (pid {proc['pid']}) survived SIGKILL")
    rec["proxy_stopped"] = True
    lab.save()
    log(f"{key}: proxy stopped (the app and its Pod object stay)")


def restart_stub(lab: LabState, key: str, rec: Pod) -> None:
    proc = rec["procs"].get("stub")
    if proc is not None and is_ours(proc):
        log(f"{key}: stub already running")
        return
    rec.pop("stopped", None)
    start_stub(lab, key, rec)
    port = rec["ports"][0][0]
    wait_until(f"{key}'s stub to listen", lambda: listening(lab, rec, port), 15)
    log(f"{key}: stub started")


def listening(lab: LabState, rec: Pod, port: int) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", lab.fabric.ns(rec["netns"]), "ss", "-Htln",
                           f"sport = :{port}"], capture_output=True, text=True, check=False)
    return None if proc.stdout.strip() else f"nothing listens on {port}"
