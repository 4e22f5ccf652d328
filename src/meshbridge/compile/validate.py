"""Rules that need the whole set of documents: references, placements, conflicts, capacity.

Each rule is a small function ``(intents, snapshot) -> problems``; :func:`check` runs them all
and returns every problem at once. Like ``istioctl analyze``, but before anything reaches a
cluster: a rule here is something that would make the generated mesh wrong or unreachable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from meshbridge import plural
from meshbridge.compile.snapshot import RemoteUse, Snapshot, selected
from meshbridge.compile.vips import capacity, vip_needs
from meshbridge.errors import Problem
from meshbridge.model import Intents, Located

Rule = Callable[[Intents, Snapshot], Iterator[Problem]]


def _problem(doc: Located[Any], path: str, message: str) -> Problem:
    return Problem(doc.source, doc.index, doc.kind, doc.obj.name, path, message)


def duplicate_names(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    seen: dict[tuple[str, str | None, str], Located[Any]] = {}
    for doc in intents.documents():
        meta = doc.obj.metadata
        key = (doc.obj.kind, meta.namespace, meta.name)
        first = seen.setdefault(key, doc)
        if first is not doc:
            yield _problem(
                doc,
                "metadata.name",
                f"duplicate {doc.kind} {doc.name!r}: first defined in {first.source}#{first.index}",
            )
    for extra in intents.meshes[1:]:
        yield _problem(extra, "", "at most one Mesh document is allowed")


def app_placements(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    for doc in intents.apps:
        app = doc.obj
        if app.spec.clusters is not None:
            for i, name in enumerate(app.spec.clusters):
                if name not in snap.clusters:
                    yield _problem(doc, f"spec.clusters[{i}]", f"no Cluster named {name!r}")
        elif app.spec.cluster_selector is not None and not selected(app, snap.clusters):
            yield _problem(
                doc, "spec.clusterSelector.matchLabels", "selects no cluster (check the labels)"
            )


def discovered_clusters(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    """Every Cluster a discovered App may run in can be read (it names a kubeconfig or a
    server's credential) and reached by other clusters without asking it (a gateway address,
    or a kubeconfig file ``meshbridge apply`` discovers the address with: a server does not
    discover gateways, and where a discovered App will run is not known in advance)."""
    for doc in intents.apps:
        app = doc.obj
        if app.spec.discover is None:
            continue
        for cluster in selected(app, snap.clusters):
            spec = snap.clusters[cluster].spec
            if spec.kubeconfig is None:
                yield _problem(
                    doc,
                    "spec.discover",
                    f"Cluster {cluster!r} has no spec.kubeconfig, so where App "
                    f"{app.namespace}/{app.name} runs cannot be read from it: give the Cluster "
                    "a kubeconfig (or a server's credential), or leave it out with the App's "
                    "spec.clusterSelector",
                )
            elif (spec.gateway is None or spec.gateway.address is None) and not spec.kubeconfig.path:
                yield _problem(
                    doc,
                    "spec.discover",
                    f"Cluster {cluster!r} has no spec.gateway.address, and a meshbridge server "
                    f"does not discover gateway addresses: App {app.namespace}/{app.name} may "
                    "be found running there, and clients elsewhere would need it; give the "
                    "Cluster spec.gateway.address, or leave it out with spec.clusterSelector",
                )


def external_service_clusters(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    for doc in intents.external_services:
        for i, name in enumerate(doc.obj.spec.clusters or ()):
            if name not in snap.clusters:
                yield _problem(doc, f"spec.clusters[{i}]", f"no Cluster named {name!r}")


def intent_references(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    for doc in intents.inbound:
        intent = doc.obj
        ns = intent.namespace
        if (ns, intent.spec.app) not in snap.apps:
            yield _problem(doc, "spec.app", f"no App {intent.spec.app!r} in namespace {ns!r}")
        seen: set[tuple[str, str]] = set()
        for i, client in enumerate(intent.spec.clients):
            key = (client.namespace or ns, client.app)
            if key not in snap.apps:
                yield _problem(
                    doc, f"spec.clients[{i}].app", f"no App {key[1]!r} in namespace {key[0]!r}"
                )
            if key in seen:
                yield _problem(doc, f"spec.clients[{i}]", f"client {key[0]}/{key[1]} listed twice")
            seen.add(key)


def load_balancing(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    for doc in intents.inbound:
        lb = doc.obj.spec.load_balancing
        if lb is None or (doc.obj.namespace, doc.obj.spec.app) not in snap.apps:
            continue
        placed, runs = _placed(snap, doc.obj.namespace, doc.obj.spec.app)
        if len(placed) < 2:
            yield _problem(
                doc,
                "spec.loadBalancing",
                f"app {doc.obj.spec.app!r} {runs} {plural.count(len(placed), 'cluster')}; "
                "load balancing needs an app placed in more than one",
            )
        for cluster in lb.weights:
            if cluster not in placed:
                yield _problem(
                    doc,
                    f"spec.loadBalancing.weights.{cluster}",
                    f"app {doc.obj.spec.app!r} {_not(runs)} in cluster {cluster!r} "
                    f"(it {runs}: {', '.join(placed) or 'none'})",
                )
        total = sum(lb.weights.values())
        if total != 100:
            yield _problem(doc, "spec.loadBalancing.weights", f"weights sum to {total}, not 100")


def failover(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    first: dict[tuple[str, str], Located[Any]] = {}
    for doc in intents.inbound:
        intent = doc.obj
        fo = intent.spec.failover
        if fo is None or (intent.namespace, intent.spec.app) not in snap.apps:
            continue
        placed, runs = _placed(snap, intent.namespace, intent.spec.app)
        # a discovered App may run in one cluster at a time: its clients follow it by name
        if len(placed) < 2 and runs == "runs in":
            yield _problem(
                doc,
                "spec.failover",
                f"app {intent.spec.app!r} runs in {plural.count(len(placed), 'cluster')} "
                f"({', '.join(placed) or 'none'}); failover needs an app placed in more than one",
            )
        if not intent.spec.protocol.is_http:
            yield _problem(
                doc,
                "spec.failover",
                f"failover needs an HTTP, HTTP2 or GRPC port, not {intent.spec.protocol.value}: "
                "outlier detection counts failed requests, and a connection through another "
                "cluster's gateway does not fail when the instance behind it is gone",
            )
        for i, cluster in enumerate(fo.priority or ()):
            if cluster not in placed:
                yield _problem(
                    doc,
                    f"spec.failover.priority[{i}]",
                    f"app {intent.spec.app!r} {_not(runs)} in cluster {cluster!r} "
                    f"(it {runs}: {', '.join(placed) or 'none'})",
                )
        if fo.priority is not None and intent.spec.load_balancing is not None:
            yield _problem(
                doc,
                "spec.failover.priority",
                "priority orders clusters for failover without weights; with "
                "loadBalancing.weights, traffic is split by the weights instead: give one of them",
            )
        key = (intent.namespace, intent.service_name)
        other = first.setdefault(key, doc)
        if other is not doc and (
            other.obj.spec.failover != fo or other.obj.spec.load_balancing != intent.spec.load_balancing
        ):
            yield _problem(
                doc,
                "spec.failover",
                f"service {intent.service_name}.{intent.namespace} has one mesh-internal name for "
                f"failover: its failover and loadBalancing must be those of InboundIntent "
                f"{other.obj.name!r}",
            )


def _placed(snap: Snapshot, namespace: str, name: str) -> tuple[tuple[str, ...], str]:
    """The clusters an App runs in, and how a message says so. For a discovered App, the
    clusters it may run in: its weights and priority are judged against those, whatever it
    runs in now (``compile.placement`` reports the difference)."""
    app = snap.apps[(namespace, name)]
    if app.spec.discover is not None:
        return selected(app, snap.clusters), "may run in"
    return snap.placement.get((namespace, name), ()), "runs in"


def _not(runs: str) -> str:
    return "may not run" if runs == "may run in" else "does not run"


def gateway_needs(snap: Snapshot) -> dict[str, RemoteUse]:
    """The clusters other clusters reach through their gateway, each with a use that needs it
    (the first, for messages). Other clusters need no gateway address."""
    needed = {use.server_cluster: use for use in reversed(snap.remote_uses)}
    for b in snap.balanced_uses:  # failover reaches every other cluster through its gateway
        for e in snap.exposures(b.namespace, b.service):
            if e.port == b.port and e.intent.spec.failover is not None:
                lb = e.intent.spec.load_balancing
                for target in snap.intent_placement(e.intent):
                    if target != b.client_cluster and (lb is None or lb.weights.get(target)):
                        needed.setdefault(target, RemoteUse(
                            b.client_cluster, b.client_ns, b.namespace, b.service, target, b.port))
    return needed


def to_discover(snap: Snapshot) -> list[str]:
    """The clusters another cluster reaches whose gateway address the intents leave out but
    that ``meshbridge apply`` can read from the cluster (they name a kubeconfig)."""
    found = []
    for cluster in gateway_needs(snap):
        spec = snap.clusters[cluster].spec
        if (spec.gateway is None or spec.gateway.address is None) and spec.kubeconfig:
            found.append(cluster)
    return sorted(found)


def gateways(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    yield from _gateways(intents, snap, discoverable=False)


def gateways_apply_discovers(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    """``gateways`` for intents apply will complete: a missing address of a cluster apply can
    read it from is no problem (``validate``)."""
    yield from _gateways(intents, snap, discoverable=True)


def _gateways(intents: Intents, snap: Snapshot, *, discoverable: bool) -> Iterator[Problem]:
    by_name = {d.obj.name: d for d in intents.clusters}
    later = set(to_discover(snap)) if discoverable else set()
    for cluster, use in sorted(gateway_needs(snap).items()):
        gateway = snap.clusters[cluster].spec.gateway
        if (gateway is None or gateway.address is None) and cluster not in later:
            yield _problem(
                by_name[cluster],
                "spec.gateway",
                f"cluster {cluster!r} serves {use.service}.{use.namespace} to a client in "
                f"cluster {use.client_cluster!r}, so it needs a gateway address (give "
                "spec.gateway.address, or spec.kubeconfig and let `meshbridge apply` discover it)",
            )


def duplicate_exposures(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    seen: dict[tuple[str, str, int], Located[Any]] = {}
    for doc in intents.inbound:
        i = doc.obj
        key = (i.namespace, i.service_name, i.spec.port)
        first = seen.setdefault(key, doc)
        if first is not doc:
            yield _problem(
                doc,
                "spec.port",
                f"service {i.service_name!r} port {i.spec.port} is already exposed by "
                f"InboundIntent {first.obj.name!r} ({first.source}#{first.index})",
            )


def access_points(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    for doc in intents.inbound:
        protocol = doc.obj.spec.protocol
        if protocol.is_http:
            continue
        for i, client in enumerate(doc.obj.spec.clients):
            for j, _ap in enumerate(client.access_points or ()):
                yield _problem(
                    doc,
                    f"spec.clients[{i}].accessPoints[{j}]",
                    f"paths and methods need an HTTP protocol (HTTP, HTTP2, GRPC); this service "
                    f"is {protocol.value}, so they could never match",
                )


def external_tls(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    """A TLS or HTTPS service is reached from outside by PASSTHROUGH, and only it is: the
    gateway cannot terminate TLS and hand plain bytes to a port that expects TLS, nor pass a
    caller's TLS through to a port that does not speak it."""
    for doc in intents.inbound:
        ext = doc.obj.spec.external
        if ext is None:
            continue
        protocol = doc.obj.spec.protocol
        if protocol.is_tls and ext.terminated:
            given = "" if "tls_mode" in ext.model_fields_set else " (the default)"
            yield _problem(
                doc,
                "spec.external.tlsMode",
                f"this service is {protocol.value}: it speaks TLS itself, so {ext.tls_mode}"
                f"{given} would end TLS at the gateway and send plain bytes to its TLS port; "
                "write tlsMode: PASSTHROUGH (the gateway routes the caller's TLS by SNI to the "
                "service, which presents its own certificate)",
            )
        elif not protocol.is_tls and not ext.terminated:
            yield _problem(
                doc,
                "spec.external.tlsMode",
                f"PASSTHROUGH hands the caller's TLS to the service untouched, but this service "
                f"is {protocol.value}, not TLS or HTTPS; use SIMPLE or MUTUAL to end TLS at the "
                "gateway",
            )


def hosts(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    """A host is declared by one ExternalService per cluster; remote names are reserved.

    An ExternalService's ServiceEntry is exported to every namespace, so two of them declaring
    one host in one cluster — in the same namespace or not — are both visible to every sidecar
    there, and Istio merges or picks between their ports and endpoints.
    """
    reserved = {use.host for use in snap.remote_uses}
    seen: dict[tuple[str, str], Located[Any]] = {}
    for doc in intents.external_services:
        es = doc.obj
        for i, host in enumerate(es.spec.hosts):
            if host in reserved:
                yield _problem(
                    doc, f"spec.hosts[{i}]", f"{host!r} is a remote name meshbridge generates"
                )
            for cluster in es.spec.clusters or snap.clusters:
                first = seen.setdefault((cluster, host), doc)
                if first is not doc:
                    yield _problem(
                        doc,
                        f"spec.hosts[{i}]",
                        f"host {host!r} is already declared for cluster {cluster!r} by "
                        f"ExternalService {first.obj.namespace}/{first.obj.name} "
                        f"({first.source}#{first.index}); an ExternalService is visible in "
                        "every namespace, so a host is declared once per cluster",
                    )
                    break
    ingress: dict[str, Located[Any]] = {}
    for intent_doc in intents.inbound:
        ext = intent_doc.obj.spec.external
        if ext is None:
            continue
        first = ingress.setdefault(ext.host, intent_doc)
        if first is not intent_doc:
            yield _problem(
                intent_doc,
                "spec.external.host",
                f"host {ext.host!r} is already exposed by InboundIntent "
                f"{first.obj.namespace}/{first.obj.name}",
            )


def addresses(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    seen: dict[tuple[str, str], Located[Any]] = {}
    for doc in intents.external_services:
        for i, address in enumerate(doc.obj.spec.addresses or ()):
            for cluster in doc.obj.spec.clusters or snap.clusters:
                first = seen.setdefault((cluster, address), doc)
                if first is not doc:
                    yield _problem(
                        doc,
                        f"spec.addresses[{i}]",
                        f"address {address} is already used in cluster {cluster!r} by "
                        f"ExternalService {first.obj.namespace}/{first.obj.name}",
                    )
                    break


def vip_pool(intents: Intents, snap: Snapshot) -> Iterator[Problem]:
    pool = snap.mesh.spec.pool
    room = capacity(pool)
    needs, reserved = vip_needs(snap)
    for cluster, keys in sorted(needs.items()):
        taken = sum(1 for a in reserved.get(cluster, ()) if ipaddress.ip_address(a) in pool)
        if len(keys) + taken > room:
            where = intents.meshes[0] if intents.meshes else None
            message = (
                f"VIP pool {pool} holds {room} addresses but cluster {cluster!r} needs "
                f"{len(keys) + taken}"
            )
            if where is None:
                yield Problem("<defaults>", 1, "Mesh", "default", "spec.vipPool", message)
            else:
                yield _problem(where, "spec.vipPool", message)


RULES: tuple[Rule, ...] = (
    duplicate_names,
    app_placements,
    discovered_clusters,
    external_service_clusters,
    intent_references,
    duplicate_exposures,
    load_balancing,
    failover,
    access_points,
    gateways,
    external_tls,
    hosts,
    addresses,
    vip_pool,
)


# What ``validate`` checks: every rule, a gateway apply will discover allowed.
RULES_BEFORE_APPLY: tuple[Rule, ...] = tuple(
    gateways_apply_discovers if rule is gateways else rule for rule in RULES
)


def check(intents: Intents, snap: Snapshot, rules: Iterable[Rule] = RULES) -> list[Problem]:
    """Every problem every rule finds, sorted by location."""
    found: list[Problem] = []
    for rule in rules:
        found.extend(rule(intents, snap))
    return sorted(set(found))
