"""What the lab must run for a set of intents, and the intents rewritten to the lab's addresses.

The lab reads the user's intents with meshbridge's own loader and snapshot (so it sees exactly
the placement meshbridge compiles), and derives:

* one Kubernetes cluster per Cluster document, with an ingress gateway;
* one pod per App placement (cluster, namespace, app), a discovered App's being the instances
  the lab was told to deploy (``up --deploy``, ``deploy``): a stub workload behind a sidecar,
  answering on every port of the app's InboundIntents (on TLS and HTTPS ports with a lab
  certificate for the pod's name and the external hosts of its intents: a PASSTHROUGH caller
  reaches the stub itself and verifies that name);
* one stand-in host per ExternalService, answering on its ports.

The rewritten intents (``DIR/intents.yaml``) differ from the input only where the input names
places outside the lab: a Cluster's gateway address when it gives one (the lab node's address,
port unchanged; one it leaves out stays out, and apply discovers it from the cluster) and
kubeconfig (the lab's API server), and ExternalService endpoint addresses (the stand-in host).
Everything else, VIPs and hosts included, is what the user wrote, so what meshbridge renders for
the lab is what it renders for them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import net
from .intents import read_snapshot, source_texts

TLS_PROTOCOLS = ("TLS", "HTTPS")


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str  # TCP | HTTP | HTTP2 | GRPC | TLS | HTTPS (| MONGO for external services)
    service: str  # the Kubernetes Service (or ExternalService) that declares it


@dataclass(frozen=True)
class Instance:
    """One App placement: a pod with a sidecar in front of a stub."""

    cluster: str
    namespace: str
    app: str
    service_account: str
    labels: dict[str, str]
    ports: tuple[Port, ...]
    external_hosts: tuple[str, ...] = ()  # `external.host` of the app's intents

    @property
    def key(self) -> str:
        return f"{self.app}.{self.namespace}@{self.cluster}"


@dataclass(frozen=True)
class External:
    """An ExternalService's stand-in host: one address per declared endpoint (at least one)."""

    namespace: str
    name: str
    hosts: tuple[str, ...]
    ports: tuple[Port, ...]
    endpoints: int

    @property
    def key(self) -> str:
        return f"{self.name}.{self.namespace}@external"


@dataclass(frozen=True)
class ClusterPlan:
    name: str
    gateway_port: int | None  # None: the Cluster declares no gateway
    labels: dict[str, str]


@dataclass
class Plan:
    clusters: dict[str, ClusterPlan]
    instances: dict[str, Instance]
    externals: dict[str, External]
    trust_domain: str
    node_port: int
    docs: list[dict[str, Any]] = field(default_factory=list)
    discovered: frozenset[tuple[str, str]] = frozenset()  # Apps with discover: {}


def _raw_documents(paths: list[str]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for text in source_texts(paths):
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict):
                docs.append(doc)
    return docs


def instance_key(spec: str) -> tuple[str, str, str]:
    """``APP.NAMESPACE@CLUSTER`` -> (namespace, app, cluster); ValueError if it is not one."""
    app_ns, at, cluster = spec.partition("@")
    app, dot, namespace = app_ns.partition(".")
    if not (at and dot and app and namespace and cluster):
        raise ValueError(f"{spec!r} is not APP.NAMESPACE@CLUSTER")
    return namespace, app, cluster


def build(paths: list[str], deployed: list[str] | tuple[str, ...] = ()) -> Plan:
    """The lab for the intents in ``paths`` (already validated by ``meshbridge validate``);
    ``deployed``: the instances (``APP.NAMESPACE@CLUSTER``) of discovered Apps."""
    found: dict[tuple[str, str], set[str]] = {}
    for spec in deployed:
        where_ns, where_app, where = instance_key(spec)
        found.setdefault((where_ns, where_app), set()).add(where)
    snap = read_snapshot(paths, {k: frozenset(v) for k, v in found.items()})
    clusters = {}
    for name, cluster in snap.clusters.items():
        port = snap.gateway_port(name) if cluster.spec.gateway is not None else None
        clusters[name] = ClusterPlan(name, port, dict(cluster.metadata.labels))
    if len(clusters) > net.MAX_CLUSTERS:
        raise ValueError(f"the lab runs at most {net.MAX_CLUSTERS} clusters")
    instances: dict[str, Instance] = {}
    for (namespace, app_name), placed in snap.placement.items():
        app = snap.apps[(namespace, app_name)]
        ports = sorted(
            {
                Port(i.spec.port, i.spec.protocol.value, i.service_name)
                for intents in snap.services.values()
                for i in intents
                if i.namespace == namespace and i.spec.app == app_name
            },
            key=lambda p: p.number,
        )
        external_hosts = sorted(
            {
                i.spec.external.host
                for intents in snap.services.values()
                for i in intents
                if i.namespace == namespace and i.spec.app == app_name and i.spec.external
            }
        )
        labels = dict(app.spec.selector) if app.spec.selector else {"app": app_name}
        if app.spec.discover is not None:  # only where deployed (a declared split aside)
            placed = tuple(c for c in placed if c in found.get((namespace, app_name), ()))
        for where in placed:
            inst = Instance(
                where,
                namespace,
                app_name,
                app.spec.service_account or app_name,
                labels,
                tuple(ports),
                tuple(external_hosts),
            )
            instances[inst.key] = inst
    externals: dict[str, External] = {}
    for doc in snap.intents.external_services:
        es = doc.obj
        ext = External(
            es.namespace,
            es.name,
            tuple(es.spec.hosts),
            tuple(Port(p.number, p.protocol, es.name) for p in es.spec.ports),
            max(1, len(es.spec.endpoints)),
        )
        externals[ext.key] = ext
    return Plan(
        clusters=dict(sorted(clusters.items())),
        instances=dict(sorted(instances.items())),
        externals=dict(sorted(externals.items())),
        trust_domain=snap.mesh.spec.trust_domain,
        node_port=snap.mesh.spec.istio.gateway_node_port,
        docs=_raw_documents(paths),
        discovered=frozenset(k for k, a in snap.apps.items() if a.spec.discover is not None),
    )


def rewrite(
    docs: list[dict[str, Any]],
    node_addresses: dict[str, str],
    kubeconfigs: dict[str, Path],
    external_addresses: dict[str, list[str]],
) -> list[dict[str, Any]]:
    """The intents with every address outside the lab replaced by the lab's own.

    ``external_addresses`` maps an External's key to the stand-in addresses, one per endpoint
    in the order written.
    """
    out = []
    for original in docs:
        doc = copy.deepcopy(original)
        kind = doc.get("kind")
        meta = doc.get("metadata") or {}
        spec = doc.setdefault("spec", {}) if kind in ("Cluster", "ExternalService") else None
        if kind == "Cluster" and spec is not None:
            name = meta["name"]
            gateway = spec.get("gateway") or {}
            if gateway.get("address") is not None:  # none given: apply discovers it
                gateway["address"] = node_addresses[name]
            spec["kubeconfig"] = {"path": str(kubeconfigs[name]), "context": name}
        elif kind == "ExternalService" and spec is not None:
            key = f"{meta['name']}.{meta.get('namespace') or 'default'}@external"
            for endpoint, address in zip(spec.get("endpoints") or [], external_addresses[key],
                                         strict=False):
                endpoint["address"] = address
        out.append(doc)
    return out
