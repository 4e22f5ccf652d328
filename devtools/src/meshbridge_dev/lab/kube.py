"""The Kubernetes objects a real cluster would hold for the lab's pods, written to the real API
server.

istiod learns about workloads the way it does in a real cluster: from Pods (labels, service
account, IP), Services and EndpointSlices. With no kubelet, scheduler or controller-manager in
the test clusters, the lab writes what they would have written: the Pod's status (Running,
Ready, its IP) and one EndpointSlice per Service listing the ready pods. The lab also mints the
service-account tokens a kubelet would project into a pod (audience ``istio-ca``), which istiod
checks with a real TokenReview before it signs the pod's certificate.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightkube import Client, KubeConfig, codecs
from lightkube.core.exceptions import ApiError
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import (
    create_namespaced_resource,
    load_in_cluster_generic_resources,
)
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Pod, ServiceAccount
from lightkube.types import PatchType

FIELD_MANAGER = "mesh-lab"
TOKEN_SECONDS = 7 * 24 * 3600


class Kube:
    """One lab cluster's API server."""

    def __init__(self, kubeconfig: Path) -> None:
        self.client = Client(
            config=KubeConfig.from_file(str(kubeconfig)), field_manager=FIELD_MANAGER
        )

    def apply(self, objs: Iterable[dict[str, Any]]) -> list[Any]:
        """Server-side apply every object, in order."""
        out = []
        for obj in objs:
            res = codecs.from_dict(obj)
            out.append(self.client.apply(res, force=True))
        return out

    def apply_any(self, objs: Iterable[dict[str, Any]], field_manager: str) -> list[str]:
        """Server-side apply objects of any kind the cluster serves (its CRDs' included), as
        ``kubectl apply --server-side`` would for a user: ``Kind namespace/name`` of each."""
        load_in_cluster_generic_resources(self.client)
        user = Client(config=self.client.config, field_manager=field_manager)
        done = []
        try:
            for obj in objs:
                user.apply(codecs.from_dict(obj), force=True)
                meta = obj["metadata"]
                done.append(f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}")
        finally:
            user.close()
        return done

    def delete_any(self, objs: Iterable[dict[str, Any]]) -> list[str]:
        """Delete objects of any kind the cluster serves; those that were there."""
        load_in_cluster_generic_resources(self.client)
        done = []
        for obj in objs:
            res: Any = type(codecs.from_dict(obj))  # lightkube types it per scope
            meta = obj["metadata"]
            try:
                self.client.delete(res, meta["name"], namespace=meta.get("namespace"))
            except ApiError as e:
                if e.status.code != 404:
                    raise
                continue
            done.append(f"{obj['kind']} {meta.get('namespace', '')}/{meta['name']}")
        return done

    def delete(self, objs: Iterable[dict[str, Any]]) -> None:
        for obj in objs:
            res = codecs.from_dict(obj)
            if not isinstance(res, NamespacedResource):
                raise TypeError(f"the lab deletes namespaced objects only, not {obj['kind']}")
            meta = obj["metadata"]
            try:
                self.client.delete(type(res), meta["name"], namespace=meta.get("namespace"))
            except ApiError as e:
                if e.status.code != 404:
                    raise

    def set_pod_status(self, name: str, namespace: str, status: dict[str, Any]) -> None:
        """What the kubelet reports for a started pod."""
        self.client.patch(
            Pod.Status, name, {"status": status}, namespace=namespace,
            patch_type=PatchType.MERGE,
        )

    def token(self, service_account: str, namespace: str, audience: str | None = "istio-ca"
              ) -> str:
        """A projected service-account token, as the kubelet mounts it for istio-proxy
        (``audience`` None: the API server's own, for a client of it)."""
        req = ServiceAccount.Token(
            metadata=ObjectMeta(),
            spec=TokenRequestSpec(audiences=[audience] if audience else [],
                                  expirationSeconds=TOKEN_SECONDS),
        )
        res = self.client.create(req, name=service_account, namespace=namespace)
        assert res.status is not None
        return str(res.status.token)

    def list_istio(self) -> dict[tuple[str, str, str], str]:
        """(kind, namespace, name) -> resourceVersion of every Istio config object."""
        out: dict[tuple[str, str, str], str] = {}
        for group, kind, plural in ISTIO_KINDS:
            # The class lightkube registered for the kind (created on first use).
            res = create_namespaced_resource(group, "v1", kind, plural)
            for obj in self.client.list(res, namespace="*"):
                meta = obj.metadata
                assert meta is not None and meta.name and meta.resourceVersion, obj
                out[(kind, meta.namespace or "", meta.name)] = meta.resourceVersion
        return out

    def judge_istio(self) -> list[str]:
        """Every Istio config object submitted again as a dry run (server-side apply, with a
        mark so it is an update the webhook must see): why the API server refused each that
        it refused. Nothing is stored."""
        judge = Client(config=self.client.config, field_manager="mesh-lab-judge", dry_run=True)
        refused = []
        try:
            for group, kind, plural in ISTIO_KINDS:
                res = create_namespaced_resource(group, "v1", kind, plural)
                for obj in self.client.list(res, namespace="*"):
                    body: dict[str, Any] = obj.to_dict()  # type: ignore[no-untyped-call]
                    meta = body["metadata"]
                    for server_set in ("managedFields", "resourceVersion", "uid",
                                       "creationTimestamp", "generation"):
                        meta.pop(server_set, None)
                    body.pop("status", None)
                    meta.setdefault("annotations", {})["mesh-lab/judged"] = "again"
                    try:
                        judge.apply(codecs.from_dict(body), force=True)
                    except ApiError as e:
                        refused.append(f"{kind} {meta.get('namespace')}/{meta['name']}: "
                                       f"{e.status.message}")
        finally:
            judge.close()
        return refused

    def config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data (None when it does not exist)."""
        try:
            found = self.client.get(ConfigMap, name, namespace=namespace)
        except ApiError as e:
            if e.status.code == 404:
                return None
            raise
        return dict(found.data or {})

    def close(self) -> None:
        self.client.close()


ISTIO_KINDS = (
    ("networking.istio.io", "Gateway", "gateways"),
    ("networking.istio.io", "VirtualService", "virtualservices"),
    ("networking.istio.io", "DestinationRule", "destinationrules"),
    ("networking.istio.io", "ServiceEntry", "serviceentries"),
    ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies"),
)


# ------------------------------------------------------------------------------ object builders


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def service_account(name: str, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns}}


def node(name: str, address: str, labels: dict[str, str], kubelet: tuple[str, int]
         ) -> dict[str, Any]:
    """The lab's Node: its NodePorts at ``address`` (the ExternalIP, where callers from outside
    reach the ingress gateway), its kubelet at ``kubelet`` (the InternalIP and the
    ``daemonEndpoints`` port, where the API server dials it for pods/portforward)."""
    kubelet_address, kubelet_port = kubelet
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "status": {
            "addresses": [{"type": "InternalIP", "address": kubelet_address},
                          {"type": "ExternalIP", "address": address}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        },
    }


def pod(name: str, ns: str, labels: dict[str, str], service_account_name: str, node_name: str,
        containers: list[str] | list[dict[str, Any]], annotations: dict[str, str] | None = None
        ) -> dict[str, Any]:
    """A Pod bound to ``node_name``; ``containers`` are names, or ``{name, ports}``."""
    specs = [{"name": c} if isinstance(c, str) else c for c in containers]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": annotations or {}},
        "spec": {
            "serviceAccountName": service_account_name,
            "nodeName": node_name,
            "containers": [{**c, "image": f"mesh-lab/{c['name']}"} for c in specs],
        },
    }


def pod_status(address: str, host: str) -> dict[str, Any]:
    ready = [{"type": t, "status": "True"} for t in ("Initialized", "ContainersReady", "Ready",
                                                      "PodScheduled")]
    return {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}], "hostIP": host,
            "hostIPs": [{"ip": host}], "conditions": ready}


def service(name: str, ns: str, selector: dict[str, str], ports: list[dict[str, Any]],
            labels: dict[str, str] | None = None, kind: str = "ClusterIP") -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": {"type": kind, "selector": selector, "ports": ports},
    }


def endpoint_slice(service_name: str, ns: str, ports: list[dict[str, Any]],
                   pods: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The EndpointSlice the controller would write: ``pods`` are (name, address, node)."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service_name}-lab", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service_name,
                                "endpointslice.kubernetes.io/managed-by": "mesh-lab"}},
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [
            {"addresses": [address], "nodeName": node_name,
             "conditions": {"ready": True, "serving": True, "terminating": False},
             "targetRef": {"kind": "Pod", "name": name, "namespace": ns}}
            for name, address, node_name in sorted(pods, key=lambda p: p[1])
        ],
    }
