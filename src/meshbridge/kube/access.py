"""What meshbridge may ask of a cluster: every request kube/ sends, as RBAC rules, in one table.

``RULES`` is the least a cluster must allow for each thing meshbridge does there, and no more:
``docs/apply.md`` ("Permissions") lists the same table, ``meshbridge rbac`` writes it as
ClusterRoles, a Role and their bindings (:func:`rbac_documents`), and the integration tests run
discovery and apply as a user bound to exactly these (and see the named 403 when one rule is
taken away). A request added to kube/ without its rule here fails those tests.

* **apply** lists every kind it writes, in every namespace (a name it wants may be taken by an
  object it does not own, anywhere), writes them by server-side apply (``patch``, and
  ``create``, which the API server asks of an apply that makes an object) and prunes
  (``delete``); it creates namespaces. Its
  Secrets (``cacerts``, ingress credentials) live in ``istio-system`` only, so Secrets are read
  and written there and nowhere else. The root guard reads ``istio-system/cacerts``, and the
  ConfigMap ``istio-system/istio-ca-root-cert`` (the roots istiod signs under; refused, that
  cluster's istiod is only left unjudged, and a root rotation waits for it).
* **gateway discovery** (a Cluster without ``spec.gateway.address``): the
  ``istio-system/istio-ingressgateway`` Service and the nodes.
* **placement discovery** (Apps with ``discover: {}``): lists and watches, read-only, of
  Services, EndpointSlices, Deployments, StatefulSets, DaemonSets and Pods in every namespace.

A refusal (403) is reported naming the verb, the resource, the namespace and the cluster
(:func:`refused`); the other clusters carry on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshbridge.compile.naming import ISTIO_SYSTEM

__all__ = ["RULES", "Rule", "rbac_documents", "refused", "resource_name"]

@dataclass(frozen=True)
class Rule:
    """Verbs on resources of one API group, in every namespace (``namespace`` None; for a
    cluster-scoped resource, the cluster) or in one; ``purpose``: which of meshbridge's jobs
    sends them."""

    purpose: str  # "apply" | "gateway discovery" | "placement discovery"
    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    namespace: str | None = None

    @property
    def where(self) -> str:
        """Where it applies, as docs/apply.md's table says it."""
        if self.namespace is not None:
            return self.namespace
        return "cluster-scoped" if set(self.resources) <= CLUSTER_SCOPED else "every namespace"

    @property
    def role(self) -> str:
        """The RBAC object that grants it (``meshbridge rbac``)."""
        discovery = self.purpose == "placement discovery"
        return "meshbridge-discovery" if discovery else "meshbridge-apply"


CLUSTER_SCOPED = frozenset({"namespaces", "nodes"})
_WRITE = ("list", "create", "patch", "delete")
RULES: tuple[Rule, ...] = (
    Rule("apply", "", ("namespaces",), ("list", "create")),
    Rule("apply", "networking.istio.io",
         ("serviceentries", "destinationrules", "gateways", "virtualservices"), _WRITE),
    Rule("apply", "security.istio.io", ("authorizationpolicies",), _WRITE),
    Rule("apply", "install.istio.io", ("istiooperators",), _WRITE),
    Rule("apply", "", ("secrets",), ("get", *_WRITE), ISTIO_SYSTEM),
    Rule("apply", "", ("configmaps",), ("get",), ISTIO_SYSTEM),
    Rule("gateway discovery", "", ("services",), ("get",), ISTIO_SYSTEM),
    Rule("gateway discovery", "", ("nodes",), ("list",)),
    Rule("placement discovery", "", ("services", "pods"), ("list", "watch")),
    Rule("placement discovery", "discovery.k8s.io", ("endpointslices",), ("list", "watch")),
    Rule("placement discovery", "apps", ("deployments", "statefulsets", "daemonsets"),
         ("list", "watch")),
)


def resource_name(group: str, resource: str) -> str:
    """``endpointslices.discovery.k8s.io``, ``services`` (the core group has no suffix)."""
    return f"{resource}.{group}" if group else resource


def refused(verb: str, group: str, resource: str, namespace: str | None, cluster: str,
            message: str = "") -> str:
    """A 403's report: the verb, resource, namespace (``every namespace`` for a request across
    them; none for a cluster-scoped one) and the cluster, then the API server's words."""
    where = "in every namespace" if namespace is None else f"in namespace {namespace}"
    text = (f"forbidden: {verb} {resource_name(group, resource)} {where} "
            f"(cluster {cluster})")
    return f"{text}: {message}" if message else text


def rbac_documents(subject: dict[str, str], *, discovery: bool = True) -> list[dict[str, Any]]:
    """The ClusterRoles, the Role (in istio-system) and their bindings that give ``subject``
    (an RBAC subject: ``{"kind": "User", "name": ...}``, a Group, or a ServiceAccount with its
    namespace) what meshbridge needs; without ``discovery``, no placement discovery role."""
    rules = [r for r in RULES if discovery or r.purpose != "placement discovery"]
    docs: list[dict[str, Any]] = []
    roles = sorted({(r.role, r.namespace) for r in rules}, key=lambda k: (k[0], k[1] or ""))
    for role, namespace in roles:
        mine = [r for r in rules if (r.role, r.namespace) == (role, namespace)]
        meta: dict[str, Any] = {"name": role}
        if namespace is not None:
            meta["namespace"] = namespace
        meta["labels"] = {"app.kubernetes.io/managed-by": "meshbridge"}
        kind = "ClusterRole" if namespace is None else "Role"
        docs.append({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta,
            "rules": [{"apiGroups": [r.group], "resources": list(r.resources),
                       "verbs": list(r.verbs)} for r in mine],
        })
        docs.append({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": f"{kind}Binding",
            "metadata": dict(meta),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [_subject(subject)],
        })
    return docs


def _subject(subject: dict[str, str]) -> dict[str, str]:
    if subject["kind"] == "ServiceAccount":
        return dict(subject)
    return {"apiGroup": "rbac.authorization.k8s.io", **subject}
