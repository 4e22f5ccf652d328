"""What a cluster holds for a workload, written as its controllers would (the test clusters
run none): a Service, its EndpointSlice with ready or not-ready endpoints, a Deployment; and
the objects deleted again. Through the admin's lightkube client."""

from __future__ import annotations

import contextlib
from typing import Any

from lightkube import ApiError
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Namespace, Service
from lightkube.resources.discovery_v1 import EndpointSlice
from testenvrun import Cluster


def namespace(cluster: Cluster, name: str) -> None:
    with contextlib.suppress(ApiError):  # already there
        cluster.lightkube().create(Namespace.from_dict(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))


def serve(cluster: Cluster, ns: str, service: str, *ready: bool, port: int = 8000) -> None:
    """Service ``ns/service`` and one EndpointSlice with an endpoint per ``ready`` flag."""
    namespace(cluster, ns)
    client = cluster.lightkube()
    client.apply(Service.from_dict({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": service, "namespace": ns},
        "spec": {"ports": [{"name": f"http-{port}", "port": port}], "selector": {"app": service}},
    }), field_manager="test")
    client.apply(EndpointSlice.from_dict(_slice(ns, service, ready, port)), field_manager="test")


def _slice(ns: str, service: str, ready: tuple[bool, ...], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{service}-lab", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": f"http-{port}", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [f"10.9.0.{i + 1}"], "conditions": {"ready": r}}
                      for i, r in enumerate(ready)],
    }


def unserve(cluster: Cluster, ns: str, service: str) -> None:
    """The Service and its EndpointSlice deleted (the workload is gone)."""
    client = cluster.lightkube()
    for res, name in ((EndpointSlice, f"{service}-lab"), (Service, service)):
        with contextlib.suppress(ApiError):
            client.delete(res, name, namespace=ns)


def deploy(cluster: Cluster, ns: str, app: str, label_key: str = "app") -> None:
    """A Deployment whose pod template carries ``label_key: app`` (no pod runs: no
    controller)."""
    namespace(cluster, ns)
    cluster.lightkube().apply(Deployment.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{app}-v1", "namespace": ns},
        "spec": {"selector": {"matchLabels": {label_key: app}},
                 "template": {"metadata": {"labels": {label_key: app}},
                              "spec": {"containers": [{"name": app, "image": "sleep"}]}}},
    }), field_manager="test")
