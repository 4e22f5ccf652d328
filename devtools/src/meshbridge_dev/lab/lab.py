"""The mesh lab: run a set of intents for real on one machine, and send requests through it.

``up`` gives every Cluster of the intents a real control plane (etcd, kube-apiserver, istiod
whose CA is the cluster's rendered ``cacerts`` and whose validating webhook the API server
calls) and a real ingress gateway (pilot-agent + Envoy, ``sni-dnat``), and every App placement a
pod: a stub workload behind a real sidecar (pilot-agent + Envoy, traffic captured by Istio's own
iptables rules). Then it runs ``meshbridge apply`` on the intents, rewritten to lab addresses,
and waits until every proxy has ACKed its configuration.

Stand-ins, each only where one host needs one (see docs/testing.md):

* NodePorts: iptables REDIRECT from the node address (the gateway's namespace) to the gateway's
  target ports, for the ports its Service declares (kube-proxy's job);
* cluster DNS: ``meshlab.dns`` (kube-dns's job), answering Services with their pods' addresses
  since no kube-proxy turns ClusterIPs into pods for the gateway;
* the kubelet and controllers: the lab writes Pod status and EndpointSlices;
* the sidecar injector: the lab starts pilot-agent with the environment the injector gives it;
* services outside the mesh: stub hosts at lab addresses (the intents are rewritten to them).

State lives in ``DIR/lab.json``; every process is recorded with its PID and kernel start time,
and every network namespace with its inode, so ``down`` can prove nothing is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.machinery
import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from . import istio, kube, net, pki
from .plan import TLS_PROTOCOLS, Instance, Plan, build

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
STATE = "lab.json"
CLONE_NEWNET = 0x40000000
READY_TIMEOUT = 120.0
SYNC_TIMEOUT = 120.0
SYNC_QUIET = 1.5  # seconds istiod's sync state must hold still before we call it settled
GATEWAY_NAME = "istio-ingressgateway"
OUTSIDE_HOST = "outside.mesh-lab"
OUTSIDE_KEY = "outside@external"


class LabError(Exception):
    """Reported as one message; the exit status is 1 (2 for invalid intents)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def log(msg: str) -> None:
    print(f"mesh-lab: {msg}", file=sys.stderr, flush=True)


def _load_testenv() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("k8s_testenv", str(istio.TESTENV))
    spec = importlib.util.spec_from_loader("k8s_testenv", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


testenv = _load_testenv()  # process records: spawn, stop_process, is_ours, log_tail


def enter_netns(name: str) -> None:
    """Move this process (it must have no other thread yet) into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise LabError(f"setns({name}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def meshbridge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("meshbridge")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"meshbridge {args[0]} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr.strip() or proc.stdout.strip()}",
                       status=2 if proc.returncode == 2 else 1)
    return proc


def wait_until(desc: str, check: Callable[[], str | None], timeout: float,
               interval: float = 0.25) -> None:
    """Poll ``check`` (None when done, else why not) until done or timeout."""
    deadline = time.monotonic() + timeout
    why = "never checked"
    while time.monotonic() < deadline:
        result = check()
        if result is None:
            return
        why = result
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {desc}: {why}")


def python_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "MESHBRIDGE"))}
    env["PYTHONPATH"] = str(SCRIPTS)
    return env


class Lab:
    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.state: dict[str, Any] = {}
        self.state_path = self.dir / STATE
        # Pods of different clusters start on threads; they share the state and its file.
        self._lock = threading.RLock()

    # ---------------------------------------------------------------- state

    def load(self) -> None:
        if not self.state_path.is_file():
            raise LabError(f"no lab in {self.dir} (run `mesh-lab up --dir {self.dir} -f ...`)")
        self.state = json.loads(self.state_path.read_text())

    def save(self) -> None:
        with self._lock:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.state_path)

    @property
    def fabric(self) -> net.Fabric:
        return net.Fabric(self.state["id"])

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def kubeconfig(self, cluster: str) -> Path:
        return self.path("testenv", f"{cluster}.kubeconfig")

    def istiod_debug(self, cluster: str) -> str:
        """host:port of istiod's debug endpoints (loopback of the ctl namespace)."""
        record = json.loads(self.path("testenv", "k8s-testenv.json").read_text())
        return f"127.0.0.1:{record['clusters'][cluster]['istiod_ports']['http']}"

    def cluster_index(self, cluster: str) -> int:
        return int(self.state["clusters"][cluster]["index"])

    # ---------------------------------------------------------------- up

    def up(self, files: list[str], service_protocols: dict[str, str] | None = None) -> None:
        if self.state_path.is_file():
            raise LabError(f"a lab is already recorded in {self.dir}: use `mesh-lab apply` to "
                           f"change its intents, or `mesh-lab down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        blocked = untraversable(self.dir)
        if blocked:
            raise LabError(f"the proxies run as uid {istio.SIDECAR_UID} and must reach {self.dir}"
                           f", but {blocked} lets no other user through (chmod o+x it, or pick "
                           f"another --dir)")
        meshbridge("validate", *[a for f in files for a in ("-f", f)])
        plan = build(files)
        t0 = time.monotonic()
        tools = istio.tools()
        self.state = {
            "id": secrets.token_hex(3), "clusters": {}, "pods": {}, "next_port": 1,
            "inputs": [str(Path(f).resolve()) if f != "-" else f for f in files],
            "netns": {}, "tools": {k: str(v) for k, v in tools.items()},
            "service_protocols": service_protocols or {},
        }
        self.save()
        try:
            self._up(plan, tools)
        except BaseException as e:
            why = e if isinstance(e, LabError) else repr(e)
            if os.environ.get("MESHLAB_KEEP_FAILED") == "1":
                log(f"up failed ({why}); MESHLAB_KEEP_FAILED=1: everything stays up for a look "
                    f"(`mesh-lab down --dir {self.dir}` when done)")
                raise
            log(f"up failed ({why}); stopping what it started (logs stay in {self.dir})")
            with contextlib.suppress(Exception):
                self.down(quiet=True)
            raise
        log(f"up in {time.monotonic() - t0:.1f}s: {len(plan.clusters)} clusters, "
            f"{len(plan.instances)} app instances, {len(plan.externals)} outside services")

    def _up(self, plan: Plan, tools: dict[str, Path]) -> None:
        fabric = self.fabric
        fabric.create()
        self._record_netns(fabric.fabric)
        self._record_netns(fabric.ctl)
        for i, name in enumerate(plan.clusters, start=1):
            self.state["clusters"][name] = {
                "index": i, "node": net.node_address(i), "istiod": net.istiod_address(i),
                "dns": net.dns_address(i), "gateway_port": plan.clusters[name].gateway_port,
                "labels": plan.clusters[name].labels,
            }
            fabric.add_address("ctl", net.istiod_address(i))
            fabric.add_address("ctl", net.dns_address(i))
        self.save()
        enter_netns(fabric.ctl)  # from here on, this process's sockets live in the lab
        self.path("ca").mkdir(mode=0o700, exist_ok=True)
        pki.lab_ca(self.path("lab-ca"))
        self._assign_externals(plan)
        self._write_intents(plan)
        self._render()
        installs = self._installs(plan, tools)
        self._start_control_planes(plan, tools)
        self._start_dns()
        each(lambda c: self._start_gateway(c, installs[c], tools), list(plan.clusters))
        self._sync_pods(plan, tools)
        self._apply_and_wait()

    def _record_netns(self, name: str) -> None:
        self.state["netns"][name] = os.stat(f"/run/netns/{name}").st_ino
        self.save()

    def _next_port(self) -> int:
        n = int(self.state["next_port"])
        self.state["next_port"] = n + 1
        return n

    def _assign_externals(self, plan: Plan) -> None:
        """Stand-in addresses for every ExternalService endpoint (kept across apply)."""
        externals = self.state.setdefault("externals", {})
        used = {a for e in externals.values() for a in e["addresses"]}
        n = 1
        for key, ext in plan.externals.items():
            have = externals.get(key, {}).get("addresses", [])
            while len(have) < ext.endpoints:
                while net.external_address(n) in used:
                    n += 1
                have.append(net.external_address(n))
                used.add(net.external_address(n))
            externals[key] = {"addresses": have, "hosts": list(ext.hosts)}
        self.save()

    def _write_intents(self, plan: Plan) -> None:
        from .plan import rewrite

        nodes = {c: v["node"] for c, v in self.state["clusters"].items()}
        kubeconfigs = {c: self.kubeconfig(c) for c in self.state["clusters"]}
        addresses = {k: v["addresses"] for k, v in self.state["externals"].items()}
        docs = rewrite(plan.docs, nodes, kubeconfigs, addresses)
        text = ("# Written by scripts/mesh-lab: the input intents with every address outside "
                "the lab replaced by a lab address.\n")
        text += yaml.safe_dump_all(docs, sort_keys=False)
        self.path("intents.yaml").write_text(text)

    def _mb_state(self) -> list[str]:
        return ["--state", str(self.path("state.db"))]

    def _render(self) -> None:
        """Render once to learn each cluster's IstioOperator, and export its CA for istiod."""
        out = self.path("render")
        meshbridge("render", *self._mb_state(), "-f", str(self.path("intents.yaml")),
                   "-o", str(out))
        for cluster in self.state["clusters"]:
            dest = self.path("ca", cluster)
            meshbridge("pki", "export", "--cluster", cluster, "--dir", str(dest),
                       *self._mb_state(), "-f", str(self.path("intents.yaml")))
        ingress_ca = meshbridge("pki", "show", "--ingress-ca", *self._mb_state(), check=False)
        if ingress_ca.returncode == 0 and "BEGIN CERTIFICATE" in ingress_ca.stdout:
            self.path("ingress-ca.pem").write_text(ingress_ca.stdout)

    def _installs(self, plan: Plan, tools: dict[str, Path]) -> dict[str, istio.Install]:
        installs = {}
        mesh_dir = self.path("mesh")
        mesh_dir.mkdir(exist_ok=True)
        for cluster in plan.clusters:
            operator = self.path("render", cluster, "istio-system", "istiooperator.meshbridge.yaml")
            if not operator.is_file():
                raise LabError(f"meshbridge rendered no IstioOperator for {cluster} at {operator}")
            install = istio.manifest(tools["istioctl"], operator)
            (mesh_dir / f"{cluster}.yaml").write_text(yaml.safe_dump(install.mesh))
            installs[cluster] = install
        return installs

    def _start_control_planes(self, plan: Plan, tools: dict[str, Path]) -> None:
        args = ["python3", str(istio.TESTENV), "up", "--istiod", "--dir", str(self.path("testenv"))]
        for cluster in plan.clusters:
            info = self.state["clusters"][cluster]
            args += ["--istiod-cacerts", f"{cluster}={self.path('ca', cluster)}",
                     "--istiod-mesh", f"{cluster}={self.path('mesh', cluster + '.yaml')}",
                     "--istiod-address", f"{cluster}={info['istiod']}"]
        args += list(plan.clusters)
        log(f"starting {len(plan.clusters)} control planes (etcd, kube-apiserver, istiod)")
        self.state["testenv"] = str(self.path("testenv"))  # recorded first: `down` stops them
        self.save()
        proc = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"k8s-testenv up failed:\n{proc.stderr[-4000:]}")

    def _start_dns(self) -> None:
        self._write_zones()
        listen = [a for c in self.state["clusters"].values() for a in ("--listen", c["dns"])]
        cmd = [sys.executable, "-m", "meshlab.dns", "--zones", str(self.path("dns.json")), *listen]
        self.state["dns"] = self._spawn(cmd, self.path("dns.log"))
        self.save()

    def _spawn(self, cmd: list[str], logfile: Path, env: dict[str, str] | None = None
               ) -> dict[str, Any]:
        rec: dict[str, Any] = testenv.spawn(cmd, logfile, env=env or python_env())
        return rec

    # ---------------------------------------------------------------- pods

    def pod_dir(self, key: str) -> Path:
        safe = key.replace("@", "_")
        return self.path("pods", safe)

    def _new_pod(self, key: str, kind: str, cluster: str | None, namespace: str, app: str,
                 address: str) -> dict[str, Any]:
        with self._lock:
            return self._new_pod_locked(key, kind, cluster, namespace, app, address)

    def _new_pod_locked(self, key: str, kind: str, cluster: str | None, namespace: str, app: str,
                        address: str) -> dict[str, Any]:
        port = self._next_port()
        role = f"p{port}"
        rec = {"kind": kind, "cluster": cluster, "namespace": namespace, "app": app,
               "name": f"{app}-lab" if kind == "app" else (GATEWAY_NAME if kind == "gateway"
                                                            else app),
               "address": address, "netns": role, "veth": port, "procs": {}}
        self.state["pods"][key] = rec
        netns = self.fabric.attach(role, port, [address])
        self._record_netns(netns)
        self.save()
        return rec

    def _pod_address(self, cluster: str) -> str:
        index = self.cluster_index(cluster)
        used = {p["address"] for p in self.state["pods"].values()}
        for n in range(10, 250):
            address = net.pod_address(index, n)
            if address not in used:
                return address
        raise LabError(f"cluster {cluster}: no pod address left (at most 240 pods a cluster)")

    def _hosts_and_resolv(self, rec: dict[str, Any]) -> tuple[str, str]:
        hosts = (f"127.0.0.1\tlocalhost\n{rec['address']}\t{rec['name']}\n")
        if rec["cluster"] is None:
            return hosts, f"nameserver {net.NAMESERVER}\n"
        cluster = self.state["clusters"][rec["cluster"]]
        # istiod's name, as a Service of the cluster would make it resolvable.
        hosts += f"{cluster['istiod']}\t{istio.ISTIOD_HOST}\n"
        ns = rec["namespace"]
        resolv = (f"nameserver {cluster['dns']}\n"
                  f"search {ns}.svc.cluster.local svc.cluster.local cluster.local\n"
                  f"options ndots:5\n")
        return hosts, resolv

    def _start_gateway(self, cluster: str, install: istio.Install, tools: dict[str, Path]
                       ) -> None:
        info = self.state["clusters"][cluster]
        k = kube.Kube(self.kubeconfig(cluster))
        try:
            node_name = "lab-node"
            node_labels = {key: v for key, v in info["labels"].items()
                           if key.startswith("topology.kubernetes.io/")}
            k.apply([kube.node(node_name, info["node"], node_labels)])
            services = k.apply(install.gateway_objects)
            node_ports = {}
            for svc in services:
                if getattr(svc, "kind", None) == "Service":
                    for p in svc.spec.ports or []:
                        node_ports[str(p.port)] = {"node_port": p.nodePort,
                                                    "target": int(p.targetPort or p.port),
                                                    "name": p.name}
            info["node_ports"] = node_ports
            key = f"{GATEWAY_NAME}.istio-system@{cluster}"
            rec = self._new_pod(key, "gateway", cluster, "istio-system", GATEWAY_NAME,
                                info["node"])
            labels = install.gateway_labels
            k.apply([kube.pod(rec["name"], "istio-system", labels,
                              "istio-ingressgateway-service-account", node_name, ["istio-proxy"])])
            k.set_pod_status(rec["name"], "istio-system", kube.pod_status(info["node"],
                                                                         info["node"]))
            ports = [{"name": v["name"], "port": v["target"], "protocol": "TCP"}
                     for v in node_ports.values()]
            k.apply([kube.endpoint_slice("istio-ingressgateway", "istio-system", ports,
                                         [(rec["name"], info["node"], node_name)])])
            token = k.token("istio-ingressgateway-service-account", "istio-system")
        finally:
            k.close()
        # The NodePort stand-in: node address:nodePort -> the gateway's target port.
        rules = ["*nat", ":PREROUTING ACCEPT [0:0]"]
        for v in node_ports.values():
            if v["node_port"]:
                rules.append(f"-A PREROUTING -p tcp --dport {v['node_port']} "
                             f"-j REDIRECT --to-ports {v['target']}")
        rules.append("COMMIT")
        self._iptables_restore(rec["netns"], "\n".join(rules) + "\n")
        env = istio.pod_env(
            name=rec["name"], namespace="istio-system", address=rec["address"], node=node_name,
            node_address=info["node"], service_account="istio-ingressgateway-service-account",
            cluster=cluster, mesh=self._mesh(cluster), envoy=istio.envoy_binary(),
            workload=GATEWAY_NAME, ports=[v["target"] for v in node_ports.values()],
            extra={k_: v for k_, v in install.gateway_env.items()
                   if k_ not in ("ISTIO_META_CLUSTER_ID",)},
        )
        self._start_proxy(key, rec, tools, env, labels, token,
                          ["proxy", "router", "--domain", "istio-system.svc.cluster.local",
                           "--proxyLogLevel=warning", "--log_output_level=default:info"])

    def _mesh(self, cluster: str) -> dict[str, Any]:
        data: dict[str, Any] = yaml.safe_load(self.path("mesh", f"{cluster}.yaml").read_text())
        return data

    def _iptables_restore(self, role: str, rules: str) -> None:
        proc = subprocess.run(["ip", "netns", "exec", self.fabric.ns(role), "iptables-restore",
                               "--noflush"], input=rules, capture_output=True, text=True,
                              check=False)
        if proc.returncode != 0:
            raise LabError(f"iptables-restore in {role}: {proc.stderr.strip()}")

    def _start_proxy(self, key: str, rec: dict[str, Any], tools: dict[str, Path],
                     env: dict[str, str], labels: dict[str, str], token: str,
                     args: list[str]) -> None:
        root = self.pod_dir(key)
        if root.exists():
            shutil.rmtree(root)
        hosts, resolv = self._hosts_and_resolv(rec)
        ca = self.path("ca", rec["cluster"], "root-cert.pem").read_bytes()
        istio.prepare_pod_dir(root, token=token, root_cert=ca,
                              template=tools["envoy-bootstrap-template"], labels=labels,
                              annotations={}, hosts=hosts, resolv=resolv)
        cmd = net.in_netns(self.fabric.ns(rec["netns"]), [str(tools["pilot-agent"]), *args],
                           hosts=root / "hosts", resolv=root / "resolv.conf", cwd=root,
                           uid=istio.SIDECAR_UID)
        # Envoy reopens /dev/stdout for the access log: its log file must be the proxy user's.
        logfile = root / "proxy.log"
        logfile.touch()
        os.chown(logfile, istio.SIDECAR_UID, istio.SIDECAR_UID)
        rec["procs"]["proxy"] = testenv.spawn(cmd, logfile, env=env)
        self.save()

    def _sync_pods(self, plan: Plan, tools: dict[str, Path]) -> None:
        """Start the pods the plan has and the lab lacks; stop the ones it no longer has."""
        wanted = dict(plan.instances)
        for key, rec in list(self.state["pods"].items()):
            if rec["kind"] in ("app", "external") and key not in wanted and \
                    key not in plan.externals:
                self._remove_pod(key)
        by_cluster: dict[str, list[Instance]] = {}
        for key, inst in wanted.items():
            if key not in self.state["pods"]:
                by_cluster.setdefault(inst.cluster, []).append(inst)
        each(lambda c: self._start_instances(c, by_cluster[c], tools), sorted(by_cluster))
        for key, ext in plan.externals.items():
            if key not in self.state["pods"]:
                self._start_external(key, ext)
        if OUTSIDE_KEY not in self.state["pods"]:
            self._start_outside()
        self._publish_endpoints(plan)
        self._write_zones()
        self._wait_ready()

    def _start_instances(self, cluster: str, instances: list[Instance],
                         tools: dict[str, Path]) -> None:
        k = kube.Kube(self.kubeconfig(cluster))
        try:
            for inst in instances:
                with self._lock:
                    rec = self._new_pod(inst.key, "app", cluster, inst.namespace, inst.app,
                                        self._pod_address(cluster))
                    rec["ports"] = [[p.number, p.protocol, p.service] for p in inst.ports]
                    rec["tls_names"] = list(inst.external_hosts)
                    rec["service_account"] = inst.service_account
                    rec["labels"] = inst.labels
                k.apply([kube.namespace(inst.namespace),
                         kube.service_account(inst.service_account, inst.namespace)])
                k.apply([kube.pod(rec["name"], inst.namespace, injected_labels(inst),
                                  inst.service_account,
                                  "lab-node", ["app", "istio-proxy"])])
                k.set_pod_status(rec["name"], inst.namespace,
                                 kube.pod_status(rec["address"],
                                                 self.state["clusters"][cluster]["node"]))
                token = k.token(inst.service_account, inst.namespace)
                self._start_app_pod(inst, rec, tools, token)
        finally:
            k.close()

    def _start_app_pod(self, inst: Instance, rec: dict[str, Any], tools: dict[str, Path],
                       token: str) -> None:
        netns = self.fabric.ns(rec["netns"])
        mesh = self._mesh(inst.cluster)
        env = istio.pod_env(
            name=rec["name"], namespace=inst.namespace, address=rec["address"], node="lab-node",
            node_address=self.state["clusters"][inst.cluster]["node"],
            service_account=inst.service_account, cluster=inst.cluster, mesh=mesh,
            envoy=istio.envoy_binary(), workload=inst.app, ports=[p.number for p in inst.ports],
        )
        # The istio-init container: Istio's own capture rules, with the injector's arguments.
        init = subprocess.run(
            net.in_netns(netns, istio.iptables_command(tools["pilot-agent"]),
                         resolv=self._resolv_file(inst.key, rec)),
            env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
        if init.returncode != 0:
            raise LabError(f"{inst.key}: istio-iptables failed:\n{init.stderr[-2000:]}")
        self._start_stub(inst.key, rec)
        self._start_proxy(inst.key, rec, tools, env, injected_labels(inst), token,
                          ["proxy", "sidecar", "--domain", f"{inst.namespace}.svc.cluster.local",
                           "--proxyLogLevel=warning", "--log_output_level=default:info"])

    def _resolv_file(self, key: str, rec: dict[str, Any]) -> Path:
        """The pod's resolv.conf (istio-iptables captures DNS to the servers it names)."""
        path = self.path("pods", key.replace("@", "_") + ".resolv.conf")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self._hosts_and_resolv(rec)[1])
        return path

    def _stub_command(self, rec: dict[str, Any]) -> list[str]:
        cmd = [sys.executable, "-m", "meshlab.stub", "--cluster", rec["cluster"] or "external",
               "--namespace", rec["namespace"], "--app", rec["app"]]
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

    def _start_stub(self, key: str, rec: dict[str, Any]) -> None:
        if not rec.get("ports"):
            return  # a pure client: nothing listens
        if any(p[1] in TLS_PROTOCOLS for p in rec["ports"]) and "tls" not in rec:
            names = sorted(set(rec.get("tls_names") or []) | {rec["name"]})
            rec["tls"] = [str(p) for p in pki.stub_certificate(
                self.path("lab-ca"), self.path("pods", key.replace("@", "_") + "-tls"), names)]
        logfile = self.path("pods", key.replace("@", "_") + ".stub.log")
        logfile.parent.mkdir(parents=True, exist_ok=True)
        cmd = net.in_netns(self.fabric.ns(rec["netns"]), self._stub_command(rec))
        rec["procs"]["stub"] = testenv.spawn(cmd, logfile, env=python_env())
        self.save()

    def _start_external(self, key: str, ext: Any) -> None:
        info = self.state["externals"][key]
        rec = self._new_pod(key, "external", None, ext.namespace, ext.name, info["addresses"][0])
        for extra in info["addresses"][1:]:
            self.fabric.add_address(rec["netns"], extra)
        rec["ports"] = [[p.number, p.protocol, p.service] for p in ext.ports]
        rec["tls_names"] = list(ext.hosts)
        self._start_stub(key, rec)

    def _start_outside(self) -> None:
        """A host outside the mesh that no intent declares (``outside.mesh-lab``, HTTP on 80 and
        HTTPS on 443): reachable from outside the mesh, so that a refusal from inside it is the
        mesh's doing (REGISTRY_ONLY), not the network's."""
        rec = self._new_pod(OUTSIDE_KEY, "outside", None, "outside", OUTSIDE_HOST,
                            net.OUTSIDE_ADDRESS)
        rec["ports"] = [[80, "HTTP", OUTSIDE_HOST], [443, "HTTPS", OUTSIDE_HOST]]
        rec["tls_names"] = [OUTSIDE_HOST]
        self._start_stub(OUTSIDE_KEY, rec)

    def _publish_endpoints(self, plan: Plan) -> None:
        """Services and EndpointSlices, as the controllers would keep them, per cluster."""
        for cluster in plan.clusters:
            services: dict[tuple[str, str], dict[str, Any]] = {}
            for inst in plan.instances.values():
                if inst.cluster != cluster:
                    continue
                rec = self.state["pods"][inst.key]
                declared = self.state.get("service_protocols", {})
                for port in inst.ports:
                    svc = services.setdefault((inst.namespace, port.service), {
                        "selector": inst.labels, "ports": {}, "pods": {}})
                    svc["ports"][port.number] = declared.get(
                        f"{inst.namespace}/{port.service}:{port.number}", port.protocol)
                    svc["pods"][rec["name"]] = rec["address"]
            published = set(self.state.get("services", {}).get(cluster, []))
            gone = published - {f"{ns}/{name}" for ns, name in services}
            if not services and not gone:
                continue
            k = kube.Kube(self.kubeconfig(cluster))
            try:
                for (ns, name), svc in sorted(services.items()):
                    ports = [service_port(n, p) for n, p in sorted(svc["ports"].items())]
                    k.apply([kube.service(name, ns, svc["selector"], ports)])
                    slice_ports = [{"name": p["name"], "port": p["port"], "protocol": "TCP"}
                                   for p in ports]
                    k.apply([kube.endpoint_slice(name, ns, slice_ports,
                                                 [(pod, addr, "lab-node")
                                                  for pod, addr in svc["pods"].items()])])
                for ns_name in sorted(gone):  # no instance left: the Service goes with its pods
                    ns, name = ns_name.split("/")
                    k.delete([kube.endpoint_slice(name, ns, [], []),
                              kube.service(name, ns, {}, [])])
            finally:
                k.close()
        self.state["services"] = {
            c: sorted({f"{i.namespace}/{p.service}" for i in plan.instances.values()
                       if i.cluster == c for p in i.ports})
            for c in plan.clusters}
        self.save()

    def _write_zones(self) -> None:
        zones: dict[str, dict[str, list[str]]] = {"shared": {}}
        for ext in self.state.get("externals", {}).values():
            for host in ext["hosts"]:
                zones["shared"][host] = ext["addresses"][:1]
        zones["shared"][OUTSIDE_HOST] = [net.OUTSIDE_ADDRESS]
        for cluster, info in self.state["clusters"].items():
            zone: dict[str, list[str]] = {}
            for rec in self.state["pods"].values():
                if rec["cluster"] != cluster or rec["kind"] != "app":
                    continue
                for _, _, service_name in rec.get("ports", []):
                    name = f"{service_name}.{rec['namespace']}.svc.cluster.local"
                    zone.setdefault(name, [])
                    if rec["address"] not in zone[name]:
                        zone[name].append(rec["address"])
            zones[info["dns"]] = {n: sorted(a) for n, a in sorted(zone.items())}
        tmp = self.path("dns.json.tmp")
        tmp.write_text(json.dumps(zones, indent=1, sort_keys=True))
        os.replace(tmp, self.path("dns.json"))

    def _remove_pod(self, key: str) -> None:
        rec = self.state["pods"].pop(key)
        for name, proc in rec.get("procs", {}).items():
            testenv.stop_process(proc, f"{key} {name}", grace=5)
        self.fabric.detach(rec["netns"])
        self.state["netns"].pop(self.fabric.ns(rec["netns"]), None)
        if rec["kind"] == "app" and rec["cluster"] in self.state["clusters"]:
            k = kube.Kube(self.kubeconfig(rec["cluster"]))
            try:
                k.delete([kube.pod(rec["name"], rec["namespace"], {}, "", "", [])])
            finally:
                k.close()
        self.save()

    def _wait_ready(self) -> None:
        """Every proxy reports ready (pilot-agent's /healthz/ready: Envoy has its first config
        from istiod and its certificate)."""
        def check() -> str | None:
            for key, rec in sorted(self.state["pods"].items()):
                proc = rec.get("procs", {}).get("proxy")
                if proc is None:
                    continue
                if not testenv.is_ours(proc):
                    raise LabError(f"{key}: the proxy exited; last lines of {proc['log']}:\n"
                                   f"{testenv.log_tail(proc['log'], 30)}")
                url = f"http://{rec['address']}:{istio.STATUS_PORT}/healthz/ready"
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        if resp.status != 200:
                            return f"{key}: /healthz/ready answered {resp.status}"
                except (OSError, urllib.error.URLError) as e:
                    return f"{key}: /healthz/ready: {e}"
            for key, rec in sorted(self.state["pods"].items()):
                stub = rec.get("procs", {}).get("stub")
                if stub is not None and not testenv.is_ours(stub) and not rec.get("stopped"):
                    raise LabError(f"{key}: the stub exited; last lines of {stub['log']}:\n"
                                   f"{testenv.log_tail(stub['log'], 30)}")
            return None
        wait_until("every proxy to be ready", check, READY_TIMEOUT)

    # ---------------------------------------------------------------- apply and sync

    def _apply_and_wait(self) -> None:
        log("meshbridge apply")
        proc = meshbridge("apply", *self._mb_state(), "-f", str(self.path("intents.yaml")),
                          check=False)
        self.path("apply.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise LabError(f"meshbridge apply failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
        self._wait_synced()

    def expected_proxies(self, cluster: str) -> set[str]:
        return {f"{rec['name']}.{rec['namespace']}" for rec in self.state["pods"].values()
                if rec["cluster"] == cluster and "proxy" in rec.get("procs", {})}

    def _wait_synced(self) -> None:
        """istiod has read every Istio object now in its cluster, and every proxy has ACKed the
        configuration istiod last sent it, and that state held still for SYNC_QUIET seconds."""
        clusters = self.state["clusters"]
        wanted: dict[str, dict[tuple[str, str, str], str]] = {}
        for cluster in clusters:
            k = kube.Kube(self.kubeconfig(cluster))
            try:
                wanted[cluster] = k.list_istio()
            finally:
                k.close()
        last: dict[str, Any] = {}
        quiet_since = [time.monotonic()]
        debug = {cluster: self.istiod_debug(cluster) for cluster in clusters}

        def check() -> str | None:
            snapshot: dict[str, Any] = {}
            for cluster in clusters:
                seen = {(c["kind"], c["metadata"].get("namespace", ""), c["metadata"]["name"]):
                        c["metadata"].get("resourceVersion") for c in istio.configz(debug[cluster])}
                for key, version in wanted[cluster].items():
                    if seen.get(key) != version:
                        quiet_since[0] = time.monotonic()
                        return f"{cluster}: istiod has not read {key[0]} {key[1]}/{key[2]} yet"
                entries = istio.syncz(debug[cluster])
                problems = istio.sync_problems(entries, self.expected_proxies(cluster))
                nacked = [p for p in problems if ": NACK of " in p]
                if nacked:
                    raise LabError(f"{cluster}: a proxy rejected its configuration:\n  "
                                   + "\n  ".join(nacked))
                if problems:
                    quiet_since[0] = time.monotonic()
                    return problems[0]
                snapshot[cluster] = sorted(
                    (e.get("proxy"), sorted((t, r.get("sent"))
                                            for t, r in (e.get("resources") or {}).items()))
                    for e in entries)
            if snapshot != last.get("value"):
                last["value"] = snapshot
                quiet_since[0] = time.monotonic()
                return "istiod is still pushing"
            if time.monotonic() - quiet_since[0] < SYNC_QUIET:
                return "waiting for istiod to stay quiet"
            return None
        wait_until("every proxy to ACK its configuration", check, SYNC_TIMEOUT, interval=0.3)
        log("every proxy has ACKed its configuration")

    # ---------------------------------------------------------------- apply (changed intents)

    def apply(self, files: list[str], service_protocols: dict[str, str] | None = None) -> None:
        self.load()
        if service_protocols is not None:
            self.state["service_protocols"] = service_protocols
        meshbridge("validate", *[a for f in files for a in ("-f", f)])
        plan = build(files)
        if sorted(plan.clusters) != sorted(self.state["clusters"]):
            raise LabError("the intents name other clusters than the running lab "
                           f"({', '.join(self.state['clusters'])}); run `mesh-lab down` and "
                           f"`mesh-lab up` for a different set of clusters")
        enter_netns(self.fabric.ctl)
        tools = {k: Path(v) for k, v in self.state["tools"].items()}
        self.state["inputs"] = [str(Path(f).resolve()) if f != "-" else f for f in files]
        self._assign_externals(plan)
        self._write_intents(plan)
        self._sync_pods(plan, tools)
        self._apply_and_wait()

    # ---------------------------------------------------------------- stop / start

    def instance(self, spec: str) -> tuple[str, dict[str, Any]]:
        self.load()
        rec = self.state["pods"].get(spec)
        if rec is None or rec["kind"] != "app":
            known = ", ".join(k for k, r in sorted(self.state["pods"].items())
                              if r["kind"] == "app")
            raise LabError(f"no app instance {spec!r} in this lab (APP.NAMESPACE@CLUSTER; "
                           f"known: {known})")
        return spec, rec

    def stop(self, spec: str) -> None:
        key, rec = self.instance(spec)
        proc = rec["procs"].get("stub")
        if proc is None:
            raise LabError(f"{key} has no ports: nothing to stop")
        testenv.stop_process(proc, f"{key} stub", grace=5)
        rec["stopped"] = True
        self.save()
        log(f"{key}: stub stopped (its sidecar stays)")

    def start(self, spec: str) -> None:
        key, rec = self.instance(spec)
        proc = rec["procs"].get("stub")
        if proc is not None and testenv.is_ours(proc):
            log(f"{key}: stub already running")
            return
        rec.pop("stopped", None)
        self._start_stub(key, rec)
        port = rec["ports"][0][0]
        wait_until(f"{key}'s stub to listen", lambda: self._listening(rec, port), 15)
        log(f"{key}: stub started")

    def _listening(self, rec: dict[str, Any], port: int) -> str | None:
        proc = subprocess.run(["ip", "netns", "exec", self.fabric.ns(rec["netns"]), "ss", "-Htln",
                               f"sport = :{port}"], capture_output=True, text=True, check=False)
        return None if proc.stdout.strip() else f"nothing listens on {port}"

    # ---------------------------------------------------------------- requests

    def client_command(self, args: list[str], key: str | None) -> list[str]:
        """The lab client, in an app's pod (as that app) or, with no key, outside the mesh."""
        self.load()
        cmd = [sys.executable, "-m", "meshlab.client", *args]
        if key is None:
            resolv = self.path("outside.resolv.conf")
            first = next(iter(self.state["clusters"].values()))
            resolv.write_text(f"nameserver {first['dns']}\n")  # the shared zone: outside hosts
            return net.in_netns(self.fabric.ctl, cmd, resolv=resolv)
        rec = self.state["pods"][key]
        root = self.pod_dir(key)
        return net.in_netns(self.fabric.ns(rec["netns"]), cmd, hosts=root / "hosts",
                            resolv=root / "resolv.conf")

    def node_port(self, cluster: str, port: int) -> tuple[str, int]:
        self.load()
        info = self.state["clusters"].get(cluster)
        if info is None:
            raise LabError(f"no cluster {cluster!r} in this lab "
                           f"(have {', '.join(self.state['clusters'])})")
        entry = info.get("node_ports", {}).get(str(port))
        if entry is None or not entry.get("node_port"):
            raise LabError(f"{cluster}'s ingress gateway Service has no port {port}")
        return info["node"], int(entry["node_port"])

    # ---------------------------------------------------------------- down

    def down(self, quiet: bool = False) -> None:
        if not self.state:
            self.load()
        failed: list[str] = []
        recs: list[tuple[str, dict[str, Any]]] = []
        for key, rec in self.state.get("pods", {}).items():
            for name, proc in rec.get("procs", {}).items():
                recs.append((f"{key} {name}", proc))
        if self.state.get("dns"):
            recs.append(("dns", self.state["dns"]))
        for _, proc in recs:  # SIGKILL at once: the whole lab goes, nothing needs draining
            if testenv.is_ours(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc["pid"], signal.SIGKILL)
        for label, proc in recs:
            if not testenv.stop_process(proc, label, grace=5):
                failed.append(f"{label} (pid {proc['pid']}) survived SIGKILL")
        if self.state.get("testenv") and Path(self.state["testenv"]).is_dir():
            ctl = self.fabric.ctl
            cmd = ["python3", str(istio.TESTENV), "down", "--dir", self.state["testenv"]]
            if net.netns_exists(ctl):
                cmd = ["ip", "netns", "exec", ctl, *cmd]
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  check=False)
            if proc.returncode != 0:
                failed.append(f"k8s-testenv down: {proc.stderr.strip()[-2000:]}")
        failed += kill_in_namespaces(set(self.state.get("netns", {}).values()))
        failed += [f"network namespace {n} could not be deleted" for n in self.fabric.destroy()]
        if failed:
            raise LabError("down incomplete:\n  " + "\n  ".join(failed))
        self.state_path.unlink(missing_ok=True)
        if not quiet:
            log(f"down: every process stopped, every network namespace deleted ({self.dir})")


def each(work: Callable[[str], None], clusters: list[str]) -> None:
    """``work`` for every cluster, the clusters after the first four at a time.

    The first runs alone. Once, under load, the lab process died of a SIGSEGV inside msgspec's
    compiled core (lightkube decodes the API server's answers with msgspec) while four threads
    decoded their first answers at once; it did not happen again. The suspected cause is the
    decoder msgspec builds for a type on its first use: after one cluster done alone, every type
    the others use has one.
    """
    if not clusters:
        return
    work(clusters[0])
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, clusters[1:]))


def untraversable(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that a user other than its owner cannot enter."""
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if st.st_uid != istio.SIDECAR_UID and not st.st_mode & 0o001:
            return folder
    return None


def injected_labels(inst: Instance) -> dict[str, str]:
    """The pod's labels as the sidecar injector leaves them: the app's own, plus the ones that
    tell other proxies this pod speaks Istio mTLS (auto mTLS reads tlsMode) and name its
    canonical service."""
    return {**inst.labels, "security.istio.io/tlsMode": "istio",
            "service.istio.io/canonical-name": inst.labels.get("app", inst.app),
            "service.istio.io/canonical-revision": "latest"}


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
        left = [p for p in stragglers() if testenv.proc_start_time(p) is not None]
    return [f"pid {p} is still running in a lab network namespace" for p in left]


def service_port(number: int, protocol: str) -> dict[str, Any]:
    """A Service port as the app's own manifest declares it: its name carries the protocol the
    workload speaks, the way Istio reads it (``http-8000``, ``tcp-3306``).

    That is the intent's protocol unless ``--service-protocol`` says otherwise: the seed's
    httpbin, for one, declares its port ``http`` while the intent that exposes it across
    clusters says TCP. Istio's server sidecar treats the port as its Service declares it (an
    HTTP port gets the caller's identity in ``x-forwarded-client-cert``; a TCP port is proxied
    as bytes).
    """
    return {"name": f"{protocol.lower()}-{number}", "port": number, "targetPort": number,
            "protocol": "TCP"}


def parse_service_protocols(values: list[str]) -> dict[str, str]:
    """``NAMESPACE/SERVICE:PORT=PROTOCOL`` options -> {"NAMESPACE/SERVICE:PORT": PROTOCOL}."""
    out = {}
    for value in values:
        target, sep, protocol = value.partition("=")
        ns_svc, colon, port = target.rpartition(":")
        protocol = protocol.upper()
        if not sep or not colon or "/" not in ns_svc or not port.isdigit() or \
                protocol not in ("TCP", "HTTP", "HTTP2", "GRPC", "TLS", "HTTPS"):
            raise LabError(f"--service-protocol {value!r}: expected NAMESPACE/SERVICE:PORT=PROTOCOL"
                           f" with PROTOCOL one of TCP, HTTP, HTTP2, GRPC, TLS, HTTPS", status=2)
        out[f"{ns_svc}:{int(port)}"] = protocol
    return out
