"""Failover across clusters: one name that reaches every cluster running the service, with
outlier detection deciding which of them get traffic.

Istio's own failover (``localityLbSetting``) works between the endpoints of one host, and its
DestinationRule refuses ``distribute`` together with ``failover``. Each meshbridge cluster sees the
others only as gateway addresses, so meshbridge gives a service with ``failover`` one more host,
its *mesh-internal name* ``<service>.<namespace>.mesh.internal`` (see ``naming``):

* in each client cluster, a ServiceEntry for that name whose endpoints are the service itself
  where the client's cluster runs it (``<service>.<namespace>.svc.cluster.local``) and every other
  cluster's gateway, and a DestinationRule with the intent's outlier detection; the
  VirtualService on the ordinary name (``loadbalancing``) sends every request to it;
* in each cluster that serves it, the same name exported through the gateway (Gateway host,
  ServiceEntry to the local service, ISTIO_MUTUAL), exactly like a remote name.

Then one Envoy cluster holds one endpoint per cluster, and Envoy does the rest:

* without weights, each endpoint gets a *tier*: the client's own cluster first, then clusters in
  its region and zone, then its region, then the others (Cluster labels
  ``topology.kubernetes.io/region`` / ``zone``); or the order of ``failover.priority``. Tiers are
  expressed with Istio's ``failoverPriority`` entries ``meshbridge.dev/tier-<k>=yes`` for
  k = 1..n (n the worst tier): an endpoint of tier *t* carries the labels ``tier-1`` to
  ``tier-<n-t>``, so it matches the first n - t entries, which Istio maps to priority *t*.
  Traffic goes to the best tier with an endpoint not ejected, and comes back when an ejected
  endpoint's ejection time is over;
* with weights, every endpoint sits in one priority with the cluster's weight, locality load
  balancing off: Envoy splits by the weights among the endpoints not ejected, so an ejected
  cluster's share goes to the others in proportion, and returns with it.

``minHealthPercent: 0`` keeps Envoy's panic mode (send to every endpoint when most are ejected)
out of the way: traffic only ever goes to endpoints not ejected, while there is one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from meshbridge.compile import crosscluster, naming
from meshbridge.compile.crosscluster import (
    TLS_MODE_LABEL,
    networking,
    port_names,
    ports_spec,
)
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Exposure, Snapshot
from meshbridge.model import Cluster, InboundIntent

REGION = "topology.kubernetes.io/region"
ZONE = "topology.kubernetes.io/zone"
TIER_LABEL = "meshbridge.dev/tier-{}"


def tiers(snap: Snapshot, intent: InboundIntent, client: str) -> dict[str, int]:
    """Cluster -> tier (0 best) for a client in ``client``, over the clusters the intent's
    traffic may go to."""
    placed = snap.intent_placement(intent)
    assert intent.spec.failover is not None
    priority = intent.spec.failover.priority
    if priority is not None:
        last = len(priority)
        return {c: priority.index(c) if c in priority else last for c in placed}
    home = snap.clusters[client].metadata.labels
    raw = {c: _locality_tier(home, snap.clusters[c], c == client) for c in placed}
    dense = {t: i for i, t in enumerate(sorted(set(raw.values())))}  # no empty tiers
    return {c: dense[t] for c, t in raw.items()}


def _locality_tier(home: dict[str, str], other: Cluster, same_cluster: bool) -> int:
    if same_cluster:
        return 0
    labels = other.metadata.labels
    same_region = labels.get(REGION) == home.get(REGION)
    if same_region and labels.get(ZONE) == home.get(ZONE):
        return 1
    return 2 if same_region else 3


def weights(intent: InboundIntent) -> dict[str, int] | None:
    lb = intent.spec.load_balancing
    return None if lb is None else {c: w for c, w in lb.weights.items() if w > 0}


def targets(snap: Snapshot, intent: InboundIntent) -> list[str]:
    """The clusters the intent's traffic may go to (placement, less zero weights)."""
    w = weights(intent)
    return [c for c in snap.intent_placement(intent) if w is None or c in w]


def _endpoint(
    snap: Snapshot, cluster: str, target: str, service: str, ns: str, names: dict[int, str]
) -> dict[str, Any]:
    if target == cluster:  # the service itself, behind its own sidecars
        return {"address": naming.local_host(service, ns), "labels": {TLS_MODE_LABEL: "istio"}}
    gateway = snap.clusters[target].spec.gateway
    assert gateway is not None and gateway.address is not None  # see validate.gateways
    port = snap.gateway_port(target)
    return {"address": gateway.address, "ports": {names[p]: port for p in sorted(names)}}


def _client_objects(
    snap: Snapshot, cluster: str, client_ns: str, exposures: list[Exposure]
) -> Iterator[Obj]:
    """The mesh-internal name in a client cluster; ``exposures`` are the service's failover
    ports this client uses, whose intents agree on ``failover`` and ``loadBalancing`` (see
    ``validate.failover``)."""
    intent = exposures[0].intent
    failover = intent.spec.failover
    assert failover is not None
    service, ns = intent.service_name, intent.namespace
    host = naming.mesh_host(service, ns)
    owners = [owner_ref("InboundIntent", e.intent.namespace, e.intent.name) for e in exposures]
    names = port_names(exposures)
    split = weights(intent)
    rank = tiers(snap, intent, cluster)
    depth = max(rank.values()) if split is None else 0
    endpoints = []
    for target in targets(snap, intent):
        ep = _endpoint(snap, cluster, target, service, ns, names)
        if split is not None:
            ep["weight"] = split[target]
        elif rank[target] < depth:
            ep.setdefault("labels", {}).update(
                {TIER_LABEL.format(k): "yes" for k in range(1, depth - rank[target] + 1)}
            )
        endpoints.append(ep)
    entry = {
        "hosts": [host],
        "location": "MESH_INTERNAL",
        "ports": ports_spec(exposures),
        "resolution": "DNS",
        "endpoints": endpoints,
        "exportTo": ["."],
    }
    od = failover.outlier_detection
    outlier: dict[str, Any] = {}
    if od.consecutive_5xx_errors:
        outlier["consecutive5xxErrors"] = od.consecutive_5xx_errors
    if od.consecutive_gateway_errors:
        outlier["consecutiveGatewayErrors"] = od.consecutive_gateway_errors
    outlier.update({
        "interval": od.interval,
        "baseEjectionTime": od.base_ejection_time,
        "maxEjectionPercent": od.max_ejection_percent,
        "minHealthPercent": 0,
    })
    if split is None:
        locality: dict[str, Any] = {
            "enabled": True,
            "failoverPriority": [f"{TIER_LABEL.format(k)}=yes" for k in range(1, depth + 1)],
        }
    else:
        locality = {"enabled": False}
    policy = {
        "tls": {"mode": "ISTIO_MUTUAL"},
        "loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": locality},
        "outlierDetection": outlier,
    }
    rule = {"host": host, "trafficPolicy": policy, "exportTo": ["."]}
    yield make(networking(snap), "ServiceEntry", host, client_ns, entry, owners)
    yield make(networking(snap), "DestinationRule", host, client_ns, rule, owners)


def _failover_exposures(snap: Snapshot, ns: str, service: str, ports: set[int]) -> list[Exposure]:
    return sorted(
        (e for e in snap.exposures(ns, service)
         if e.port in ports and e.intent.spec.failover is not None),
        key=lambda e: e.port,
    )


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    used: dict[tuple[str, str, str, str], set[int]] = defaultdict(set)
    for use in snap.balanced_uses:
        used[(use.client_cluster, use.client_ns, use.namespace, use.service)].add(use.port)
    exports: dict[tuple[str, str, str], set[int]] = defaultdict(set)
    for (cluster, client_ns, ns, service), ports in sorted(used.items()):
        exposures = _failover_exposures(snap, ns, service, ports)
        if not exposures:
            continue
        if ctx.wants(cluster):
            for obj in _client_objects(snap, cluster, client_ns, exposures):
                yield cluster, obj
        # a cluster exports the name when a client elsewhere may send to it
        for target in targets(snap, exposures[0].intent):
            if target != cluster:
                exports[(target, ns, service)].update(e.port for e in exposures)
    for (cluster, ns, service), ports in sorted(exports.items()):
        if ctx.wants(cluster):
            host = naming.mesh_host(service, ns)
            exposures = _failover_exposures(snap, ns, service, ports)
            for obj in crosscluster.exported(snap, host, exposures, None):
                yield cluster, obj
