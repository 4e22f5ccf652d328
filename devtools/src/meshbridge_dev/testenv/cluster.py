"""One test cluster: its etcd and kube-apiserver, a small HTTPS client for it, its CRDs, and the
state file and kubeconfig that let later commands and other programs find it.

Each cluster is a separate Kubernetes control plane on 127.0.0.1: its own etcd (own data
directory and ports), its own kube-apiserver on a free port, its own CA, serving certificate,
service-account key and admin client certificate (RBAC authorization). There are no nodes,
controllers or schedulers: objects are stored and validated, nothing runs them.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
from pathlib import Path
from typing import Any

from .common import Record, TestenvError, log
from .procs import spawn, wait_for

STATE_FILE = "k8s-testenv.json"
FIELD_MANAGER = "k8s-testenv"
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class Api:
    """A tiny HTTPS client for one cluster (client-certificate auth)."""

    def __init__(self, port: int, pki: Path) -> None:
        self.port = port
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.ctx = ctx

    def request(self, method: str, path: str, body: bytes | None = None,
                ctype: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            if ctype:
                headers["Content-Type"] = ctype
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, data = self.request("GET", path)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {"raw": data.decode(errors="replace")}


def load_state(d: Path) -> dict[str, Any]:
    p = d / STATE_FILE
    if not p.is_file():
        return {"clusters": {}}
    state: dict[str, Any] = json.loads(p.read_text())
    return state


def save_state(d: Path, state: dict[str, Any]) -> None:
    p = d / STATE_FILE
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)


def kubeconfig_text(name: str, port: int, pki: Path) -> str:
    def b64(f: str) -> str:
        return base64.b64encode((pki / f).read_bytes()).decode()
    return (
        "# Written by scripts/k8s-testenv: a throwaway test cluster, deleted by `down`.\n"
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {name}\n"
        "  cluster:\n"
        f"    server: https://127.0.0.1:{port}\n"
        f"    certificate-authority-data: {b64('ca.crt')}\n"
        "users:\n"
        f"- name: {name}-admin\n"
        "  user:\n"
        f"    client-certificate-data: {b64('admin.crt')}\n"
        f"    client-key-data: {b64('admin.key')}\n"
        "contexts:\n"
        f"- name: {name}\n"
        "  context:\n"
        f"    cluster: {name}\n"
        f"    user: {name}-admin\n"
        f"current-context: {name}\n"
    )


class Cluster:
    """What `up` knows of one cluster while it starts it (recorded in the state file)."""

    def __init__(self, d: Path, name: str) -> None:
        self.name = name
        self.root = d / name
        self.pki = self.root / "pki"
        self.etcd_port = self.peer_port = self.api_port = 0
        self.etcd: Record = {}
        self.apiserver: Record = {}
        self.istiod: Record = {}
        self.istiod_ports: dict[str, Any] = {}
        self._api: Api | None = None

    @property
    def api(self) -> Api:
        """The client of the API server on its current port."""
        if self._api is None or self._api.port != self.api_port:
            self._api = Api(self.api_port, self.pki)
        return self._api

    @property
    def kubeconfig(self) -> Path:
        return self.root.parent / f"{self.name}.kubeconfig"

    @classmethod
    def recorded(cls, d: Path, name: str, rec: dict[str, Any]) -> Cluster:
        """A cluster `up` started and recorded in DIR's state file."""
        c = cls(d, name)
        c.root = Path(rec["root"])
        c.pki = c.root / "pki"
        c.etcd_port, c.peer_port, c.api_port = rec["etcd_port"], rec["peer_port"], rec["api_port"]
        c.etcd, c.apiserver = rec["etcd"], rec["apiserver"]
        c.istiod, c.istiod_ports = rec.get("istiod") or {}, rec.get("istiod_ports") or {}
        return c

    def record(self) -> dict[str, Any]:
        return {"root": str(self.root), "etcd_port": self.etcd_port,
                "peer_port": self.peer_port, "api_port": self.api_port,
                "etcd": self.etcd, "apiserver": self.apiserver,
                "istiod": self.istiod, "istiod_ports": self.istiod_ports,
                "kubeconfig": str(self.kubeconfig)}

    def write_kubeconfig(self) -> None:
        tmp = self.kubeconfig.with_name(self.kubeconfig.name + ".tmp")
        tmp.write_text(kubeconfig_text(self.name, self.api_port, self.pki))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.kubeconfig)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ETCD") and k != "KUBECONFIG"}


def start_etcd(c: Cluster, etcd: Path) -> None:
    data = c.root / "etcd"
    peer = f"http://127.0.0.1:{c.peer_port}"
    client = f"http://127.0.0.1:{c.etcd_port}"
    cmd = [str(etcd), "--name", c.name, "--data-dir", str(data),
           "--listen-client-urls", client, "--advertise-client-urls", client,
           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
           "--initial-cluster", f"{c.name}={peer}", "--initial-cluster-state", "new",
           "--initial-cluster-token", f"k8s-testenv-{c.name}",
           "--log-level", "warn",
           # Throwaway test data: skip fsync (etcd's own flag for test clusters).
           "--unsafe-no-fsync"]
    c.etcd = spawn(cmd, c.root / "etcd.log", env=clean_env())


def start_apiserver(c: Cluster, binary: Path) -> None:
    p = c.pki
    cmd = [str(binary),
           f"--etcd-servers=http://127.0.0.1:{c.etcd_port}",
           "--bind-address=127.0.0.1",
           "--advertise-address=127.0.0.1",
           f"--secure-port={c.api_port}",
           f"--cert-dir={p}",
           f"--tls-cert-file={p / 'server.crt'}",
           f"--tls-private-key-file={p / 'server.key'}",
           f"--client-ca-file={p / 'ca.crt'}",
           # How it reaches a node's kubelet (pods/portforward, exec, logs): with its own
           # client certificate, checking the kubelet's serving certificate against the
           # cluster's CA. Test clusters have no kubelet; the mesh lab runs a stand-in.
           f"--kubelet-client-certificate={p / 'kubelet-client.crt'}",
           f"--kubelet-client-key={p / 'kubelet-client.key'}",
           f"--kubelet-certificate-authority={p / 'ca.crt'}",
           f"--service-account-issuer=https://127.0.0.1:{c.api_port}",
           f"--service-account-key-file={p / 'sa.pub'}",
           f"--service-account-signing-key-file={p / 'sa.key'}",
           "--service-cluster-ip-range=10.0.0.0/24",
           "--authorization-mode=RBAC",
           "--allow-privileged=true",
           # No controller-manager runs, so no default ServiceAccount is ever
           # created; the ServiceAccount admission plugin would reject pods.
           "--disable-admission-plugins=ServiceAccount",
           # 127.0.0.1 is not a valid Endpoints address; nothing routes to it anyway.
           "--endpoint-reconciler-type=none",
           "--profiling=false"]
    c.apiserver = spawn(cmd, c.root / "kube-apiserver.log", env=clean_env())


def etcd_healthy(c: Cluster) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", c.etcd_port, timeout=2)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status == 200 and json.loads(body).get("health") in ("true", True)
    finally:
        conn.close()


def apiserver_ready(c: Cluster) -> bool:
    status, _ = c.api.request("GET", "/readyz", timeout=5)
    return status == 200


def create_crd(c: Cluster, doc: str) -> dict[str, Any]:
    """POST one CRD (YAML: the API server parses it), or fetch it if it exists already."""
    status, data = c.api.request(
        "POST", f"{CRDS}?fieldManager={FIELD_MANAGER}", doc.encode(), "application/yaml")
    obj: dict[str, Any] = json.loads(data) if data else {}
    if status == 409:  # AlreadyExists (e.g. a retried up): fetch it.
        m = re.search(r"^  name:\s*(\S+)\s*$", doc, re.M)
        if not m:
            raise TestenvError(f"{c.name}: CRD exists but its name is unknown")
        status, obj = c.api.get_json(f"{CRDS}/{m.group(1)}")
    if status not in (200, 201):
        raise TestenvError(f"{c.name}: creating CRD failed: HTTP {status}: "
                           f"{obj.get('message', obj)}")
    return obj


def wait_crd_served(c: Cluster, obj: dict[str, Any], deadline: float) -> None:
    """Until the CRD is Established, its names accepted, and every served version is in
    discovery."""
    procs = [(f"{c.name}: kube-apiserver", c.apiserver), (f"{c.name}: etcd", c.etcd)]
    name = obj["metadata"]["name"]

    def established() -> bool:
        status, cur = c.api.get_json(f"{CRDS}/{name}")
        if status != 200:
            return False
        # a CRD just created may answer "conditions": null until its controller has run
        found = (cur.get("status") or {}).get("conditions") or []
        conds = {x["type"]: x["status"] for x in found}
        return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True"
    wait_for(f"{c.name}: CRD {name} Established", established, deadline, procs)
    group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
    for v in obj["spec"]["versions"]:
        if not v.get("served"):
            continue

        def discovered(gv: str = f"{group}/{v['name']}") -> bool:
            status, res = c.api.get_json(f"/apis/{gv}")
            return status == 200 and any(r.get("name") == plural
                                         for r in res.get("resources", []))
        wait_for(f"{c.name}: {plural}.{group}/{v['name']} in discovery", discovered,
                 deadline, procs)


def install_crds(c: Cluster, docs: list[str], deadline: float) -> None:
    crds = [create_crd(c, doc) for doc in docs]
    for obj in crds:
        wait_crd_served(c, obj, deadline)
    log(f"{c.name}: {len(crds)} Istio CRDs Established and served")


def recorded_api(d: Path, name: str) -> Api:
    """The API client of cluster ``name`` recorded in DIR's state file (for other programs)."""
    state = load_state(d)
    if name not in state["clusters"]:
        raise TestenvError(f"no cluster {name!r} recorded in {d}")
    return Cluster.recorded(d, name, state["clusters"][name]).api
