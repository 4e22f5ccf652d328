"""AuthorizationPolicies from accessPoints: in every cluster that runs the server, only the
declared clients (by SPIFFE principal) may call it, on the paths and methods declared.

An app is either open (no intent of it lists accessPoints: no policy at all) or closed (some intent
does): once Istio sees one ALLOW policy on a workload it denies whatever no ALLOW policy matches,
so every intent of a closed app gets a policy, clients without accessPoints being allowed
everything. The ingress gateway is allowed in when the intent is exposed externally. DENY access
points go to a separate DENY policy, which Istio evaluates before ALLOW policies.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Snapshot
from meshbridge.model import AccessPoint, InboundIntent

INGRESS_SERVICE_ACCOUNT = ("istio-system", "istio-ingressgateway-service-account")


def principal(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"{trust_domain}/ns/{namespace}/sa/{service_account}"


def _operation(ap: AccessPoint) -> dict[str, Any]:
    op: dict[str, Any] = {}
    if ap.paths:
        op["paths"] = list(ap.paths)
    if ap.methods:
        op["methods"] = list(ap.methods)
    return {"operation": op}


def _rules(snap: Snapshot, intent: InboundIntent, action: str) -> list[dict[str, Any]]:
    td = snap.mesh.spec.trust_domain
    rules: list[dict[str, Any]] = []
    for client in intent.spec.clients:
        ns = client.namespace or intent.namespace
        app = snap.apps.get((ns, client.app))
        if app is None:
            continue
        source = {"source": {"principals": [principal(td, ns, app.service_account)]}}
        points = [ap for ap in client.access_points or () if ap.action == action]
        if action == "ALLOW" and not any(ap.action == "ALLOW" for ap in client.access_points or ()):
            rules.append({"from": [source]})
            continue
        rules.extend({"from": [source], "to": [_operation(ap)]} for ap in points)
    if action == "ALLOW" and intent.spec.external is not None:
        ns, sa = INGRESS_SERVICE_ACCOUNT
        rules.append({"from": [{"source": {"principals": [principal(td, ns, sa)]}}]})
    return rules


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    by_app: dict[tuple[str, str], list[InboundIntent]] = defaultdict(list)
    for exposed in snap.services.values():
        for intent in exposed:
            by_app[(intent.namespace, intent.spec.app)].append(intent)
    api = f"security.istio.io/{snap.mesh.spec.istio.api_version}"
    for (ns, app_name), intents in sorted(by_app.items()):
        closed = any(c.access_points for i in intents for c in i.spec.clients)
        clusters = ctx.selected(snap.placement.get((ns, app_name), ()))
        if not closed or not clusters:
            continue
        app = snap.apps[(ns, app_name)]
        selector = {"matchLabels": dict(sorted(app.pod_selector.items()))}
        for intent in sorted(intents, key=lambda i: i.name):
            owners = [owner_ref("InboundIntent", ns, intent.name)]
            for action in ("ALLOW", "DENY"):
                rules = _rules(snap, intent, action)
                if not rules:
                    continue
                spec = {"selector": selector, "action": action, "rules": rules}
                name = naming.policy_name(intent.name, action)
                for cluster in clusters:
                    yield cluster, make(api, "AuthorizationPolicy", name, ns, spec, owners)
